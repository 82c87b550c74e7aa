"""Checks a plan passes before any work: names known, parts that work together, regimes that
apply to the encoder, prompt sets covering every dataset class. Each error names the cell."""

from __future__ import annotations

import functools

from ..adaptation import check_applicable, parse_regime
from ..backbones import check_model, create_backbone, parse_spec
from ..data import load_dataset
from ..data.sources import dataset_entry, dataset_path
from ..errors import ConfigError, DataError, FerBenchError
from ..plan import Cell, ResolvedCell, resolve
from ..text import check_text_encoder, load_prompt_set


def check_backbone(name: str) -> None:
    """The name parses and its family knows the model (a typo is caught here, with the closest
    names, not when the cell is built)."""
    check_model(parse_spec(name))


def check_combination(cell: Cell | ResolvedCell) -> None:
    """Reject cells whose parts cannot work together, before anything is built or trained."""
    rc = cell if isinstance(cell, ResolvedCell) else resolve(cell)
    problem = rc.regime_problem() or rc.text_problem(rc.text_tower)
    if problem:
        raise ConfigError(f"cell {rc.cell.label}: {problem}")


def check_regime_applies(backbone: str, regime: str, label: str = "") -> None:
    """An adaptation regime that cannot apply to the image encoder (vpt on a CNN, LoRA targets
    it does not have) fails here, from an architecture-only build on the meta device."""
    problem = _regime_problem(backbone, regime)
    if problem:
        raise ConfigError(f"cell {label or backbone}: backbone {backbone!r}: {problem}")


@functools.cache
def _regime_problem(backbone: str, regime: str) -> str | None:
    spec = parse_regime(regime)
    if spec.kind not in ("vpt", "lora"):
        return None
    encoder = create_backbone(backbone, device="meta", measure_cost=False).encoder
    try:
        check_applicable(encoder, spec, "image encoder")
    except ConfigError as e:
        return str(e)
    return None


def _dataset_classes(spec: str, load: bool, check_paths: bool = True
                     ) -> tuple[str, ...] | None:
    """The dataset's classes: from its registry entry when declared, else by loading it (the
    process keeps loaded datasets, so the cells reuse this load)."""
    entry = dataset_entry(spec)
    path = dataset_path(spec) if check_paths else None
    if path is not None and not path.exists():
        raise DataError(f"dataset {spec!r}: {path} does not exist")
    declared = entry.meta.get("classes")
    if declared and not load:
        return tuple(declared)
    if not load:
        return None
    try:
        return tuple(load_dataset(spec).classes)
    except FerBenchError:
        raise
    except Exception as e:  # a loader's ValueError on a malformed file is still bad input
        raise DataError(f"dataset {spec!r}: {type(e).__name__}: {e}") from e


def validate_cells(cells: list[Cell], *, load_data: bool = False,
                   check_paths: bool = True) -> None:
    """Reject unknown names, impossible combinations and prompt sets that miss a dataset class,
    before anything is trained. With `load_data`, each dataset is loaded (once) so that missing
    paths and malformed files fail here, and prompt sets are checked against its real classes.
    `check_paths=False` (dry runs planned on another machine) skips dataset path checks."""
    for bb in dict.fromkeys(c.backbone for c in cells):
        check_backbone(bb)
    classes = {ds: _dataset_classes(ds, load_data, check_paths)
               for ds in dict.fromkeys(c.dataset for c in cells)}
    for c in cells:
        rc = resolve(c)
        check_combination(rc)
        check_regime_applies(c.backbone, c.train.regime, c.label)
        if rc.head.uses_text:
            _check_text(rc, classes[c.dataset])


def _check_text(rc: ResolvedCell, classes: tuple[str, ...] | None) -> None:
    """The text encoder(s) the cell may load are known, and its prompt set covers the
    dataset's classes (when they are known)."""
    c = rc.cell
    where = "train.text_encoder" if (c.text_encoder or "default") == "default" else (
        f"cell {c.label}")
    for te in filter(None, (rc.text_encoder, rc.text_fallback)):
        check_text_encoder(te, where)
    prompt_set = load_prompt_set(c.prompts or "")
    if classes is not None:
        try:
            prompt_set.for_classes(classes)
        except ConfigError as e:
            raise ConfigError(f"{e} (needed by dataset {c.dataset!r})") from None
