"""Result files: `<out>/cells/<cell_id>/result.json`, written atomically (temp file, fsync,
rename; see fer_bench.atomic) so a reader never sees half a result, and read back with a schema
check: a result from a newer fer-bench is refused, never misread or overwritten.

Every file name a run writes is defined here, beside `CellResult`, the typed view of one
result.json. (The adapted parameters' file, `trained.safetensors`, is named by
fer_bench.adaptation.artifacts, a lower layer that cannot import this one.)"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import file_sha256, write_json_atomic
from ..errors import FerBenchError

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"                 # the commit point of a cell
PREDICTIONS_FILE = "predictions.npz"        # per-image labels and predictions, own test split
ARTIFACTS_FILE = "artifacts.npz"            # a head's extra arrays (prototypes, ...)
CHECKPOINT_FILE = "checkpoint.safetensors"  # best-on-validation weights (--keep-checkpoints)
LOG_FILE = "train.log"                      # per cell, one line per epoch and the outcome
LOGS_DIR = "logs"                           # <out>/logs: run-wide logs
EVENTS_FILE = Path(LOGS_DIR) / "cells.jsonl"  # one line per cell attempt's start and end


class NewerSchemaError(FerBenchError):
    """A result written by a newer fer-bench: this version must neither read nor replace it."""


def dataset_slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec)


def cross_predictions_file(spec: str) -> str:
    """The predictions of a cross-dataset evaluation, beside the cell's own."""
    return f"predictions-{dataset_slug(spec)}.npz"


# The keys every result.json has (runner.base_result), in the order it writes them.
_BASE_KEYS = ("schema", "cell_id", "status", "error", "backbone", "prompts", "head",
              "text_encoder", "dataset", "split", "seed", "config", "metrics", "timing", "env")


@dataclass(frozen=True)
class CellResult:
    """One result.json. The base keys are fields; every other key (history, cross, traceback,
    finished_at, predictions_sha256, trained_params_file, ...) is kept in `extra`, and `keys`
    remembers the file's key order, so `to_json()` gives back exactly the dict that was read.
    Fields stay None when a (hand-made or old) file lacks them; `keys` then leaves them out."""

    schema: int | None = SCHEMA_VERSION
    cell_id: str | None = None
    status: str | None = None
    error: str | None = None
    backbone: str | None = None
    prompts: str | None = None
    head: str | None = None
    text_encoder: str | None = None
    dataset: str | None = None
    split: str | None = None
    seed: int | None = None
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)  # where it was read from
    keys: tuple[str, ...] = field(default=_BASE_KEYS, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: dict, path: Path | None = None) -> CellResult:
        if not isinstance(data, dict):
            raise FerBenchError(f"{path}: a result must be a JSON object")
        base = {k: data[k] for k in _BASE_KEYS if k in data}
        extra = {k: v for k, v in data.items() if k not in _BASE_KEYS}
        return cls(**base, extra=extra, path=Path(path) if path is not None else None,
                   keys=tuple(data))

    def to_json(self) -> dict:
        order = [*self.keys, *(k for k in self.extra if k not in self.keys)]
        return {k: getattr(self, k) if k in _BASE_KEYS else self.extra[k] for k in order
                if k in _BASE_KEYS or k in self.extra}

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def dir(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    @property
    def resolved(self) -> dict:
        """The resolved config (backbone costs, regime, precision, dataset splits), or {}."""
        return (self.config or {}).get("resolved") or {}

    @property
    def ci(self) -> dict | None:
        """The bootstrap intervals the run stored with the metrics, if any."""
        ci = (self.metrics or {}).get("ci")
        return ci if isinstance(ci, dict) else None

    @property
    def cross(self) -> dict:
        """Cross-dataset evaluations: dataset spec -> metrics block (and its predictions file)."""
        cross = self.extra.get("cross")
        return cross if isinstance(cross, dict) else {}

    @property
    def predictions_sha256(self) -> str | None:
        return self.extra.get("predictions_sha256")

    def complete(self) -> bool:
        """ok, and its predictions match the checksum it carries (a result written before
        predictions were checksummed has none and is trusted)."""
        if not self.ok:
            return False
        digest = self.predictions_sha256
        if digest is None:
            return True
        pred = self.dir / PREDICTIONS_FILE if self.dir is not None else None
        try:
            return pred is not None and pred.is_file() and file_sha256(pred) == digest
        except OSError:
            return False


def cell_dir(out: Path, cell_id: str) -> Path:
    """`<out>/cells/<cell_id>`; an id that is not a plain [A-Za-z0-9_-] name is refused, so no
    id can name a path outside <out>/cells."""
    if not isinstance(cell_id, str) or not cell_id or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in cell_id):
        raise FerBenchError(f"invalid cell id {cell_id!r}")
    return Path(out) / "cells" / cell_id


def _newer(path: Path, schema: int) -> NewerSchemaError:
    return NewerSchemaError(f"{path}: written by a newer fer-bench (result schema {schema}; this "
                            f"one reads up to {SCHEMA_VERSION}); upgrade fer-bench, or use "
                            "another --out")


def read_result(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FerBenchError(f"{path}: unreadable result file: {e}") from e
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise FerBenchError(f"{path}: not a fer-bench result (no integer 'schema')")
    if schema > SCHEMA_VERSION:
        raise _newer(path, schema)
    return data


def read_cell(path: Path) -> CellResult:
    """A result file, schema-checked, as a CellResult."""
    return CellResult.from_json(read_result(path), path)


def check_results_dir(out: Path) -> None:
    """Before a run writes into `out`: it must be a directory we can use, holding no result
    from a newer fer-bench (which this run would otherwise overwrite or mix with)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FerBenchError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FerBenchError(f"--out {out}: cannot create the results directory: "
                            f"{e.strerror}") from e
    for path in sorted(out.glob(f"cells/*/{RESULT_FILE}")):
        try:
            read_result(path)
        except NewerSchemaError:
            raise
        except FerBenchError:
            continue  # damaged: its cell is simply redone


def read_results(run_dir: Path) -> list[CellResult]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FerBenchError(f"results directory {run_dir} does not exist")
    return [read_cell(p) for p in sorted(run_dir.glob(f"cells/*/{RESULT_FILE}"))]


__all__ = ["ARTIFACTS_FILE", "CHECKPOINT_FILE", "EVENTS_FILE", "LOGS_DIR", "LOG_FILE",
           "PREDICTIONS_FILE", "RESULT_FILE", "SCHEMA_VERSION", "CellResult", "NewerSchemaError",
           "cell_dir", "check_results_dir", "cross_predictions_file", "dataset_slug",
           "read_cell", "read_result", "read_results", "write_json_atomic"]
