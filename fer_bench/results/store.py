"""Result files: `<out>/cells/<cell_id>/result.json`, written atomically (temp file, fsync,
rename) so a reader never sees half a result, and read back with a schema check."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import FerBenchError

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"


def write_json_atomic(path: Path, data: dict | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def cell_dir(out: Path, cell_id: str) -> Path:
    if not cell_id or not all(c.isalnum() or c in "-_" for c in cell_id):
        raise FerBenchError(f"invalid cell id {cell_id!r}")  # never a path outside <out>/cells
    return out / "cells" / cell_id


def read_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FerBenchError(f"{path}: unreadable result file: {e}") from e
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, int):
        raise FerBenchError(f"{path}: not a fer-bench result (no integer 'schema')")
    if schema > SCHEMA_VERSION:
        raise FerBenchError(f"{path}: written by a newer fer-bench (schema {schema}; this one "
                            f"reads up to {SCHEMA_VERSION}); upgrade fer-bench")
    return data


def read_results(run_dir: Path) -> list[dict]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FerBenchError(f"results directory {run_dir} does not exist")
    return [read_result(p) for p in sorted(run_dir.glob(f"cells/*/{RESULT_FILE}"))]
