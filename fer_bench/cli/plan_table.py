"""What `run --dry-run` says about each cell beyond its cost: the input size, precision,
optimisation schedule and weights a paper's methods section needs. Nothing is loaded: the
backbone is described from its card (or built on the meta device)."""

from __future__ import annotations

import functools

from ..plan import Cell, TrainConfig

SCHEDULE_KEYS = ("optimizer", "lr", "schedule", "warmup_epochs", "epochs", "batch_size",
                 "accum_steps", "weight_decay")


@functools.cache
def _describe(name: str):
    from ..backbones import describe

    return describe(name)


def input_size_text(cell: Cell) -> str:
    """The size images are resized to: `image_size` unless the encoder's input is fixed."""
    cfg = _describe(cell.backbone)
    h, w = cfg.input_size
    if cell.train.image_size and not cfg.fixed_input_size:
        h = w = cell.train.image_size
    return f"{h}" if h == w else f"{h}x{w}"


def precision_text(cfg: TrainConfig) -> str:
    """The training precision `amp` resolves to on the device this run would use."""
    import torch

    from ..compute import amp_dtype
    from ..engine import pick_device

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        return {"auto": "bf16/fp16 (cuda)", "off": "fp32"}.get(cfg.amp, cfg.amp)
    dtype = amp_dtype(pick_device(cfg.device), cfg.amp)
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace(
        "bfloat16", "bf16").replace("float16", "fp16")


def schedule_text(cfg: TrainConfig, keys: tuple[str, ...] = SCHEDULE_KEYS) -> str:
    """The optimisation settings in `keys`, compactly: `adamw lr 0.002 cosine warmup 0.5 ...`."""
    names = {"lr": "lr", "warmup_epochs": "warmup", "epochs": "ep", "batch_size": "bs",
             "accum_steps": "accum", "weight_decay": "wd"}
    parts = []
    for k in keys:
        v = getattr(cfg, k)
        if k == "accum_steps" and v == 1:
            continue
        parts.append(str(v) if k in ("optimizer", "schedule") else f"{names[k]} {v:g}"
                     if isinstance(v, float) else f"{names[k]} {v}")
    return " ".join(parts)


def varying_schedule_keys(cells: list[Cell]) -> tuple[str, ...]:
    """The schedule settings that differ between cells (shown per cell; the rest once)."""
    return tuple(k for k in SCHEDULE_KEYS
                 if len({getattr(c.train, k) for c in cells}) > 1)


def weights_text(cell: Cell) -> str:
    """The weights the cell's image encoder will load, as its card or spec names them."""
    if not cell.train.pretrained:
        return "random init"
    weights = _describe(cell.backbone).weights
    return "random init" if weights in ("none", "") else weights
