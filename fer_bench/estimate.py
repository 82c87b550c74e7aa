"""Cost estimates for `run --dry-run`: parameters, GMACs per image and training-state memory,
from the backbone cards' measured tables or a build on the meta device (no weights, no data)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .backbones import describe
from .plan import Cell, head_uses_text

BYTES_FP32 = 4
ADAM_STATE = 2  # two moments per trainable parameter
MINILM_PARAMS_M = 22.7  # all-MiniLM-L6-v2; text towers of open_clip models come from the card


@dataclass(frozen=True)
class Estimate:
    params_m: float          # image encoder + text tower the cell uses
    trainable_m: float
    gmacs: float | None      # image encoder forward, one image
    state_gb: float          # weights + gradients + Adam moments, fp32

    def row(self) -> list[str]:
        g = f"{self.gmacs:.2f}" if self.gmacs is not None else "?"
        return [f"{self.params_m:.1f}", f"{self.trainable_m:.1f}", g, f"{self.state_gb:.2f}"]


@functools.cache
def _describe(name: str):
    return describe(name)


@functools.cache
def _open_clip_text_params(spec: str) -> float:
    """Text-tower size of `open_clip:MODEL@W`: from a card with the same model when one exists
    (measured once, stored in the card), else from a weightless build."""
    from .backbones import cards
    from .backbones.cards import read_card

    model = spec.split(":", 1)[1].rsplit("@", 1)[0]
    for path in cards().values():
        card = read_card(path)
        if card.family == "open_clip" and card.model == model and card.measured:
            return float(card.measured.get("text_params_m", 0.0))
    return _describe(spec).text_params_m


def estimate(cell: Cell) -> Estimate:
    """Per-cell estimate; backbones and text towers are described once per process."""
    cfg = _describe(cell.backbone)
    image_m = cfg.params_m
    text_m = 0.0
    if head_uses_text(cell.head):
        te = cell.text_encoder or "default"
        if te in ("default", "paired") and cfg.text_tower:
            text_m = cfg.text_params_m
        elif te in ("minilm", "default"):
            text_m = MINILM_PARAMS_M
        elif te.startswith("open_clip:"):
            text_m = _open_clip_text_params(te)
    regime = cell.train.regime
    frozen_heads = ("probe", "zeroshot")
    image_trains = cell.head not in frozen_heads and (regime in ("full", "image")
                                                      or regime.startswith("partial:"))
    text_trains = cell.head not in frozen_heads and regime in ("full", "text")
    trainable = (image_m if image_trains else 0.0) + (text_m if text_trains else 0.0)
    total = image_m + text_m
    state = (total + trainable * (1 + ADAM_STATE)) * 1e6 * BYTES_FP32 / 1e9
    return Estimate(round(total, 2), round(trainable, 2), cfg.gmacs, round(state, 3))
