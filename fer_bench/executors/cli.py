"""The `fer-bench run` side of the executors: shards, the torchrun relaunch, the SLURM dry run,
and progress + leaderboard for cells that ran in other processes."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import distributed
from ..plan import Cell
from . import ExecOptions, execute
from .cells import parse_shard, shard
from .torchrun import launch_cli, on_ranks

__all__ = ["ExecOptions", "launch_cli", "on_ranks", "print_dry_run", "relaunch", "run_and_report",
           "select_shard", "under_torchrun"]


def select_shard(cells: list[Cell], spec: str | None) -> list[Cell]:
    if not spec:
        return cells
    i, n = parse_shard(spec)
    return shard(cells, i, n)


def under_torchrun() -> bool:
    return distributed.env_world_size() > 1


def relaunch(nproc: int, opts: ExecOptions) -> None:
    """`--nproc N` outside torchrun: run this command again as N ranks, and exit with it."""
    if nproc < 1:
        raise typer.BadParameter("--nproc must be >= 1")
    if nproc == 1 or under_torchrun():
        return
    if opts.executor != "local" or opts.isolate:
        from ..errors import ConfigError

        raise ConfigError("--nproc is for --executor local without --isolate; with Ray use "
                          "--gpus-per-cell N, with SLURM --slurm-gpus N (each cell then runs "
                          "as N torchrun processes)")
    raise typer.Exit(launch_cli(nproc))


def print_dry_run(cells: list[Cell], out: Path, opts: ExecOptions, name: str, fmt: str) -> None:
    if opts.executor != "slurm":
        return
    from ..cli.common import console, err_console
    from .slurm import dry_run

    text = dry_run(cells, out, opts, name)
    (console if fmt == "table" else err_console).print(text, markup=False, highlight=False)


def run_and_report(cells: list[Cell], out: Path, opts: ExecOptions, rerun: bool, quiet: bool,
                   name: str) -> None:
    """Run through an executor, print each cell as it ends, then the leaderboard; exit 1 when a
    cell failed (as the local path does)."""
    from ..cli.common import console, err_console
    from ..cli.run import print_summary

    total, seen = len(cells), [0]

    def on_result(cell: Cell, report: dict) -> None:
        seen[0] += 1
        where = f"[{seen[0]}/{total}]"
        if report["status"] == "failed":
            err_console.print(f"{where} [red]failed[/red] {cell.label}: {report['error']}")
        elif not quiet:
            console.print(f"{where} {'done' if report['status'] == 'ran' else 'skipped'} "
                          f"{cell.label}")

    summary = execute(cells, out, opts, rerun=rerun, on_result=on_result)
    print_summary(cells, out, summary, name, opts.executor)
