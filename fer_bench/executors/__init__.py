"""Where a matrix's cells run: here (`local`, optionally one subprocess per cell), on a Ray
cluster (`ray`), or as a SLURM job array through submitit (`slurm`). Every executor runs each
cell through the same runner code (`cells.run_job`), so `<out>/cells/` -- and the leaderboard
-- do not depend on which one ran them. See docs/clusters.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..plan import Cell
from ..run import RunSummary
from .options import EXECUTORS, ExecOptions, all_plugins, require_extra

OnResult = Callable[[Cell, dict], None]


def execute(cells: list[Cell], out: Path, opts: ExecOptions, *, rerun: bool = False,
            on_result: OnResult | None = None) -> RunSummary:
    """Run the cells with the chosen executor (not the in-process local path, which is
    `runner.run_plan`) and summarise as the runner does."""
    from ..results.store import check_results_dir
    from ..run import validate_cells

    opts.validate()
    # Names, combinations and prompt sets fail here, before anything is submitted; datasets
    # are loaded where the cells run (a login node need not hold them in memory).
    validate_cells(cells)
    check_results_dir(out)
    if opts.executor == "ray":
        from .ray_cluster import run_ray as run
    elif opts.executor == "slurm":
        from .slurm import run_slurm as run
    else:
        from .local import run_isolated as run
    summary = RunSummary()

    def record(cell: Cell, report: dict) -> None:
        status = report["status"]
        if status == "ran":
            summary.ran.append(cell.cell_id)
        elif status == "skipped":
            summary.skipped.append(cell.cell_id)
        else:
            summary.failed[cell.cell_id] = report.get("error") or "failed"
        if on_result:
            on_result(cell, report)

    run(cells, out, opts, rerun=rerun, on_result=record)
    return summary


__all__ = ["EXECUTORS", "ExecOptions", "all_plugins", "execute", "require_extra"]
