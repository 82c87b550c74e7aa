"""`--executor ray`: each cell is a Ray task.

Tasks rather than Tune trials: fer-bench already owns resume (a cell is done when its result is
complete on the shared file system) and exactly-once (the cell's lock), and Tune would keep a
second experiment state beside `<out>/cells/` that could disagree with it. A task declares its
resources (`--cpus-per-cell`, `--gpus-per-cell`, fractions allowed to pack cells on a GPU), Ray
schedules cells onto free resources, and a task whose worker dies or whose cell fails is
retried up to `--max-retries` times."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..plan import Cell
from ..run import is_complete
from .cells import make_payload, record_crash, run_job
from .options import require_extra


class CellAttemptFailed(Exception):
    """A cell attempt that recorded `failed`: raised inside the task so Ray retries it."""


def cell_task(payload: dict) -> dict:
    try:
        report = run_job(payload)
    except Exception as e:  # only plain, picklable exceptions cross back to the driver
        raise CellAttemptFailed(f"{type(e).__name__}: {e}") from None
    if report["status"] == "failed":
        raise CellAttemptFailed(report["error"])
    return report


def _error_text(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, CellAttemptFailed):
        return str(cause)
    first = str(e).strip().splitlines()
    return f"{type(e).__name__}: {first[0] if first else ''}"[:500]


def run_ray(cells: list[Cell], out: Path, opts, *, rerun: bool, on_result) -> None:
    ray = require_extra("ray", "ray", "--executor ray")
    started = False
    if not ray.is_initialized():
        if opts.ray_address:
            ray.init(address=opts.ray_address, log_to_driver=False)
        else:  # a private local instance for this run: no dashboard, stopped at the end
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False)
        started = True
    try:
        nproc = int(opts.gpus_per_cell) if opts.gpus_per_cell >= 2 else 1
        task = ray.remote(cell_task).options(
            num_cpus=opts.cpus_per_cell, num_gpus=opts.gpus_per_cell,
            max_retries=opts.max_retries, retry_exceptions=[CellAttemptFailed])
        pending = {}
        for cell in cells:
            if not rerun and is_complete(out, cell):
                on_result(cell, {"cell_id": cell.cell_id, "status": "skipped", "error": None})
                continue
            payload = make_payload(cell, out, plugins=opts.plugins, rerun=rerun,
                                   executor="ray", nproc=nproc,
                                   threads=max(1, math.floor(opts.cpus_per_cell)))
            pending[task.remote(payload)] = cell
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done[0])
            try:
                report = ray.get(done[0])
            except ray.exceptions.RayError as e:  # retries exhausted
                reason = _error_text(e)
                if not isinstance(getattr(e, "cause", None), CellAttemptFailed):
                    record_crash(out, cell, reason, "ray")  # the worker died every time
                report = {"cell_id": cell.cell_id, "status": "failed", "error": reason}
            on_result(cell, report)
    finally:
        if started:
            ray.shutdown()
