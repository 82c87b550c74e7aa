"""Result files: `<out>/cells/<cell_id>/result.json`, written atomically (temp file, fsync,
rename; see fer_bench.atomic) so a reader never sees half a result, and read back with a schema
check: a result from a newer fer-bench is refused, never misread or overwritten."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_json_atomic
from ..errors import FerBenchError

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"


class NewerSchemaError(FerBenchError):
    """A result written by a newer fer-bench: this version must neither read nor replace it."""


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


def read_results(run_dir: Path) -> list[dict]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FerBenchError(f"results directory {run_dir} does not exist")
    return [read_result(p) for p in sorted(run_dir.glob(f"cells/*/{RESULT_FILE}"))]


__all__ = ["RESULT_FILE", "SCHEMA_VERSION", "NewerSchemaError", "cell_dir", "check_results_dir",
           "read_result", "read_results", "write_json_atomic"]
