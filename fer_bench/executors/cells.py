"""What every executor shares: a cell as JSON (`Cell.config()` / `Cell.from_config`, to cross
process and machine boundaries without pickling code), deterministic shards, and `run_job` --
one cell through the runner, wherever it runs (a Ray worker, a SLURM array task, a subprocess),
with the runner's lock, skip-if-complete and atomic writes, so `<out>/cells/` is the same
whichever executor filled it.

Each attempt is also recorded in `<out>/logs/cells.jsonl` (one line per start and end, with
host, pid and executor): on a cluster that is where you see which node ran a cell, and how
often it was retried."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, FerBenchError
from ..plan import Cell
from ..results.store import EVENTS_FILE
from ..run import result_signature

# ---------------------------------------------------------------------------------- sharding

def parse_shard(spec: str) -> tuple[int, int]:
    """`I/N` -> (I, N), with 0 <= I < N (I counts from 0, like SLURM_ARRAY_TASK_ID)."""
    try:
        i, n = (int(p) for p in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected I/N with integers, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {spec!r}: expected 0 <= I < N (I counts from 0: the shards "
                          f"of N=4 are 0/4, 1/4, 2/4, 3/4)")
    return i, n


def shard(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The index-th of `count` shards: cells sorted by id, dealt round-robin. Depends only on
    the set of cells (not on flag order), so N launch scripts agree; sizes differ by at most 1;
    together the shards hold every cell exactly once."""
    ordered = sorted(cells, key=lambda c: c.cell_id)
    return [c for k, c in enumerate(ordered) if k % count == index]


# ------------------------------------------------------------------------------- the one job

def log_event(out: Path, event: str, cell: Cell, executor: str, **extra) -> None:
    path = Path(out) / EVENTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"t": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event,
                       "cell_id": cell.cell_id, "executor": executor,
                       "host": socket.gethostname(), "pid": os.getpid(), **extra})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one write per line: lines never interleave
    finally:
        os.close(fd)


def read_events(out: Path) -> list[dict]:
    path = Path(out) / EVENTS_FILE
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def make_payload(cell: Cell, out: Path, *, plugins: list[str], rerun: bool, executor: str,
                 nproc: int = 1, threads: int | None = None) -> dict:
    """Everything a job needs, as JSON-able data."""
    return {"cell": cell.config(), "out": str(Path(out).resolve()), "plugins": plugins,
            "rerun": rerun, "since": result_signature(out, cell) if rerun else None,
            "executor": executor, "nproc": nproc, "threads": threads}


def run_job(payload: dict, on_progress: Callable[[dict], None] | None = None) -> dict:
    """Run one cell (or adopt its result) and say how it went: {"cell_id", "status": ran |
    skipped | failed, "error"}. Safe to repeat: a retry after a crash finds the cell's lock
    free and its result absent, and runs it; a retry after success skips it."""
    from ..registry import load_plugin
    from ..run import is_complete, run_plan

    cell, out = Cell.from_config(payload["cell"]), Path(payload["out"])
    try:
        for p in payload.get("plugins") or []:
            load_plugin(p)
    except FerBenchError as e:  # e.g. a plugin path that only the driver's machine has
        return {"cell_id": cell.cell_id, "status": "failed", "error": str(e)}
    if payload.get("threads"):
        import torch

        torch.set_num_threads(int(payload["threads"]))
    executor, rerun = payload.get("executor", "local"), bool(payload.get("rerun"))
    if rerun and result_signature(out, cell) != payload.get("since") and is_complete(out, cell):
        rerun = False  # an earlier attempt of this run already redid it: never twice
    if int(payload.get("nproc") or 1) > 1:
        from .torchrun import run_job_on_ranks

        return run_job_on_ranks({**payload, "rerun": rerun})
    try:
        summary = run_plan(
            [cell], out, rerun=rerun, on_progress=on_progress,
            on_cell_start=lambda c, i: log_event(out, "start", c, executor),
            on_cell_end=lambda c, r: log_event(out, "end", c, executor, status=r["status"],
                                               error=r.get("error")))
    except FerBenchError as e:  # bad input seen only where the job runs (a missing file)
        return {"cell_id": cell.cell_id, "status": "failed", "error": str(e)}
    if summary.failed:
        return {"cell_id": cell.cell_id, "status": "failed",
                "error": summary.failed[cell.cell_id]}
    status = "ran" if summary.ran else "skipped"
    return {"cell_id": cell.cell_id, "status": status, "error": None}


def record_crash(out: Path, cell: Cell, reason: str, executor: str) -> None:
    """A job that died without a word (killed, segfault, node lost): write a `failed` result
    with the reason, as the runner does for a cell that raised -- unless the cell finished
    after all or another process holds it."""
    from ..locks import try_lock
    from ..run import base_result, is_complete, lock_path, save_cell

    lock = try_lock(lock_path(out, cell), cell.label)
    if lock is None:
        return
    with lock:
        if is_complete(out, cell):
            return
        result = base_result(cell)
        result.update(status="failed", error=reason,
                      finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        save_cell(out, cell, result)
    log_event(out, "end", cell, executor, status="failed", error=reason)
