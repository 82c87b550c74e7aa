"""What `run --dry-run` says about each cell beyond its cost: the input size, precision,
optimisation schedule and weights a paper's methods section needs, all read from the cell's
resolution (`plan.resolve`). Nothing is loaded: the backbone is described from its card (or
built on the meta device)."""

from __future__ import annotations

from ..plan import Cell, ResolvedCell, TrainConfig

SCHEDULE_KEYS = ("optimizer", "lr", "schedule", "warmup_epochs", "epochs", "batch_size",
                 "accum_steps", "weight_decay")


def input_size_text(rc: ResolvedCell) -> str:
    """The size images are resized to: `image_size` unless the encoder's input is fixed."""
    h, w = rc.input_size
    return f"{h}" if h == w else f"{h}x{w}"


def text_encoder_text(rc: ResolvedCell) -> str:
    """The text encoder as the cell names it, with what `default` resolves to."""
    named = rc.cell.text_encoder
    if rc.text_encoder is None:
        return "-"
    picked = rc.text_encoder + (f", else {rc.text_fallback}" if rc.text_fallback else "")
    return picked if named and named != "default" else f"{named or 'default'} ({picked})"


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


def plan_fields(rc: ResolvedCell) -> dict:
    """The dry run's per-cell `plan` entry (JSON output and table columns)."""
    return {"input_size": input_size_text(rc), "precision": rc.precision,
            "weights": rc.weights, "schedule": schedule_text(rc.train)}
