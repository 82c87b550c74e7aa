"""Cost estimates for `run --dry-run`: parameters, GMACs per image, and memory -- the training
state (weights, gradients, optimizer moments) of what the regime trains, and the activations a
step keeps for backward at the cell's batch size -- from an architecture-only build on the meta
device (no weights, no data, nothing computed).

Activations: the image encoder, with the regime applied (LoRA / VPT included), runs forward on
meta tensors at batch 1 and 2 under `torch.autograd.graph.saved_tensors_hooks`; the bytes of
the tensors autograd saves (parameters excluded) give a per-image slope and a constant, and a
dispatch mode records the largest single op output (what backward and evaluation hold on top).
Peak = the largest of: a training step (weights + gradients + moments + saved activations + two
of the largest outputs), the end of an epoch (the best-state copy of the trained module), and
evaluation at eval_batch_size (the input batch and two of the largest outputs: an op's input
and output; a split smaller than eval_batch_size needs less). Not traced: a text tower's
activations when it trains (the `full`, `text` and text-side LoRA regimes), so those
estimates are low by that much.
`benchmarks/perf/memory_estimate.py` compares the figure with peaks measured on CPU."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from ..adaptation import apply_adaptation, parse_regime
from ..backbones import cards, create_backbone, describe
from ..backbones.base import BackboneConfig
from ..backbones.cards import read_card
from ..plan import Cell, ResolvedCell, TrainConfig, resolve
from .regimes import encoder_blocks, set_trainable

BYTES_FP32 = 4
ADAM_STATE = 2  # two moments per trainable parameter
MINILM_PARAMS_M = 22.7  # all-MiniLM-L6-v2; text towers of open_clip models come from the card
MINILM_DIM = 384
N_CLASSES = 7


@dataclass(frozen=True)
class Estimate:
    params_m: float          # image encoder + text tower the cell uses
    trainable_m: float
    gmacs: float | None      # image encoder forward, one image
    state_gb: float          # weights + gradients + optimizer moments, fp32
    activation_gb: float | None = None  # saved for backward, one training batch
    peak_gb: float | None = None        # the estimated peak (see the module docstring)

    def row(self) -> list[str]:
        g = f"{self.gmacs:.2f}" if self.gmacs is not None else "?"
        act = f"{self.activation_gb:.2f}" if self.activation_gb is not None else "?"
        peak = f"{self.peak_gb:.2f}" if self.peak_gb is not None else "?"
        return [f"{self.params_m:.1f}", f"{self.trainable_m:.3g}", g, f"{self.state_gb:.2f}",
                act, peak]


@dataclass(frozen=True)
class Trace:
    """The image encoder under a regime, per image at the training resolution."""

    trainable: int           # image-encoder parameters that train (adaptation included)
    saved_per_image: float   # bytes autograd keeps for backward, per image
    saved_const: float       # ... independent of the batch (merged LoRA weights, ...)
    max_out_per_image: float  # the largest single op output, per image
    input_per_image: float   # the preprocessed image


@functools.cache
def _open_clip_text_params(spec: str) -> float:
    """Text-tower size of `open_clip:MODEL@W`: from a card with the same model when one exists
    (measured once, stored in the card), else from a weightless build."""
    model = spec.split(":", 1)[1].rsplit("@", 1)[0]
    for path in cards().values():
        card = read_card(path)
        if card.family == "open_clip" and card.model == model and card.measured:
            return float(card.measured.get("text_params_m", 0.0))
    return describe(spec).text_params_m


def _set_regime(encoder: nn.Module, regime: str) -> None:
    """requires_grad as the regime sets it on the image encoder; adaptation added on meta."""
    spec = parse_regime(regime)
    set_trainable(encoder, spec.kind in ("full", "image"))
    if spec.kind == "partial":
        for b in encoder_blocks(encoder)[-spec.options["blocks"]:]:
            set_trainable(b, True)
    elif spec.kind in ("lora", "vpt") and "image" in spec.towers():
        with torch.device("meta"):
            apply_adaptation(encoder, None, nn.Module(), spec, 0, "estimate")


class _Outputs(torch.utils._python_dispatch.TorchDispatchMode):
    """Bytes of each op's new outputs, in op order."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False):  # views (expand, view, ...) allocate nothing
            return out
        self.sizes.append(sum(t.numel() * t.element_size()
                              for t in (out if isinstance(out, tuple | list) else (out,))
                              if isinstance(t, torch.Tensor)))
        return out


def _saved_bytes(encoder: nn.Module, x: torch.Tensor) -> tuple[int, list[int]]:
    """(bytes autograd saves for backward, each op's output bytes) for one forward."""
    seen: dict[int, torch.Tensor] = {}  # kept alive, so no id is reused during the trace

    def pack(t: torch.Tensor):
        base = t._base if t._base is not None else t
        # by type, not id: peft re-creates MultiheadAttention's Parameter objects per call
        if not isinstance(base, nn.Parameter) and not isinstance(t, nn.Parameter):
            seen.setdefault(id(base), base)  # views count once, with their base
        return t

    mode = _Outputs()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), mode:
        encoder(x)
    saved = sum(t.numel() * t.element_size() for t in seen.values())
    return saved, mode.sizes


@functools.cache
def trace(backbone: str, regime: str, image_size: int = 0) -> Trace | None:
    """The encoder's activation profile under `regime`; None when it cannot be built on meta."""
    try:
        bb = create_backbone(backbone, device="meta", measure_cost=False)
        encoder = bb.encoder
        _set_regime(encoder, regime)
        fixed = bb.config.fixed_input_size  # as Preprocess: image_size only where it can
        size = (image_size, image_size) if image_size and not fixed else bb.config.input_size
        encoder.train()
        one = [_saved_bytes(encoder, torch.empty(b, bb.config.in_chans, *size, device="meta"))
               for b in (1, 2)]
    except Exception:  # an estimate must never stop a dry run
        return None
    slope = one[1][0] - one[0][0]
    # per op, the part of its output that grows with the batch (merged LoRA weights do not)
    outs = ([b2 - b1 for b1, b2 in zip(one[0][1], one[1][1], strict=True)]
            if len(one[0][1]) == len(one[1][1]) else [max(one[1][1], default=0) / 2])
    return Trace(trainable=sum(p.numel() for p in encoder.parameters() if p.requires_grad),
                 saved_per_image=float(slope), saved_const=float(max(0, one[0][0] - slope)),
                 max_out_per_image=float(max(outs, default=0)),
                 input_per_image=float(bb.config.in_chans * size[0] * size[1] * BYTES_FP32))


def _text_params(rc: ResolvedCell, cfg: BackboneConfig) -> tuple[float, int, bool]:
    """(text-tower params in M, its embedding dim, whether it is the backbone's paired tower)
    of the text encoder the cell's head uses (the resolution's default rule included)."""
    te = rc.text_for(cfg.text_tower)
    if te is None:
        return 0.0, 0, False
    if te == "paired":
        return cfg.text_params_m, cfg.feature_dim, True  # CLIP: image and text share the dim
    if te == "minilm":
        return MINILM_PARAMS_M, MINILM_DIM, False
    if te.startswith("open_clip:"):
        return _open_clip_text_params(te), cfg.feature_dim, False
    return 0.0, cfg.feature_dim, False


def _head_params(rc: ResolvedCell, dim: int, text_dim: int, paired: bool) -> int:
    """The head's own parameters, plus any feature adapter (CLIP-Adapter MLPs)."""
    if not rc.head.uses_text:
        n = dim * N_CLASSES + N_CLASSES
    else:
        n = 1 + (0 if paired and dim == text_dim else dim * text_dim)
    spec = rc.regime
    if spec.kind == "adapter":
        for tower, d in (("image", dim), ("text", text_dim)):
            if tower in spec.towers() and d:
                n += 2 * d * (spec.options["dim"] or max(1, d // 4))
    return n


def _act_scale(train: TrainConfig) -> float:
    """Activations under autocast are half-width (weights, gradients and moments stay fp32).
    `auto` is taken as bf16: the estimate is for the GPU a plan is sized for."""
    return 1.0 if train.amp == "off" else 0.5


def estimate(cell: Cell | ResolvedCell) -> Estimate:
    """Per-cell estimate; backbones and traces are computed once per process."""
    rc = cell if isinstance(cell, ResolvedCell) else resolve(cell)
    cfg = rc.config
    image_m = cfg.params_m
    text_m, text_dim, paired = _text_params(rc, cfg)
    kind = rc.regime.kind  # a frozen-image head's cells resolve to `frozen`
    tr = trace(rc.cell.backbone, rc.train.regime, rc.train.image_size)
    if tr is not None:
        image_train = tr.trainable
    else:
        image_train = int(image_m * 1e6) if kind in ("full", "image", "partial") else 0
    text_train = text_m * 1e6 if kind in ("full", "text") else 0.0
    head = _head_params(rc, cfg.feature_dim, text_dim, paired)
    trainable = image_train + text_train + head
    total = (image_m + text_m) * 1e6
    moments = 1 if rc.train.optimizer == "sgd" else ADAM_STATE
    weights = total * BYTES_FP32
    state = weights + trainable * (1 + moments) * BYTES_FP32
    activation = peak = None
    if tr is not None:
        peak, activation = _peak(rc.train, tr, weights, trainable, moments, image_train > 0)
    return Estimate(round(total / 1e6, 2), round(trainable / 1e6, 4), cfg.gmacs,
                    round(state / 1e9, 3),
                    None if activation is None else round(activation / 1e9, 3),
                    None if peak is None else round(peak / 1e9, 3))


def _peak(train: TrainConfig, tr: Trace, weights: float, trainable: float, moments: int,
          encoder_trains: bool) -> tuple[float, float]:
    """(peak bytes, activation bytes of one training step)."""
    scale = _act_scale(train)
    b, eb = train.batch_size, train.eval_batch_size
    moments_b = trainable * moments * BYTES_FP32
    grads = trainable * BYTES_FP32
    activation = (tr.saved_per_image * b + tr.saved_const) * scale if encoder_trains else 0.0
    # one transient buffer the size of the widest op's output (its output or its gradient, on
    # top of what is saved): 2x overestimated every measured case by up to 26%
    # (benchmarks/perf/memory_estimate.py), 1x keeps them within about +-15%
    transient = tr.max_out_per_image * b * scale if encoder_trains else 0.0
    step = weights + grads + moments_b + activation + transient + tr.input_per_image * b
    # the best-on-validation copy of the trained module (the whole model unless features are
    # cached), taken after the epoch's gradients are freed
    epoch_end = weights * (2 if encoder_trains or not train.feature_cache else 1) + moments_b
    evaluation = (weights + moments_b
                  + eb * (2 * tr.max_out_per_image * scale + tr.input_per_image))
    return max(step, epoch_end, evaluation), activation
