"""The `fer-bench run` side of the executors: shards, the torchrun relaunch, the SLURM dry run,
and progress for cells that run in other processes (`run.print_summary` then ranks them)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from ..executors import ExecOptions, execute
from ..executors.cells import parse_shard, shard
from ..executors.torchrun import launch_cli, on_ranks
from ..plan import Cell
from ..run import RunSummary
from ..train import distributed
from .common import console, err_console

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
        raise ConfigError("--nproc is for --executor local without --isolate; with Ray use "
                          "--gpus-per-cell N, with SLURM --slurm-gpus N (each cell then runs "
                          "as N torchrun processes)")
    raise typer.Exit(launch_cli(nproc))


def print_dry_run(cells: list[Cell], out: Path, opts: ExecOptions, name: str, fmt: str) -> None:
    if opts.executor != "slurm":
        return
    from ..executors.slurm import dry_run

    text = dry_run(cells, out, opts, name)
    (console if fmt == "table" else err_console).print(text, markup=False, highlight=False)


def run_and_report(cells: list[Cell], out: Path, opts: ExecOptions, rerun: bool,
                   quiet: bool) -> RunSummary:
    """Run through an executor and print each cell as it ends; the caller prints the summary
    (as the local path does)."""
    total, seen = len(cells), [0]

    def on_result(cell: Cell, report: dict) -> None:
        seen[0] += 1
        where = f"[{seen[0]}/{total}]"
        if report["status"] == "failed":
            err_console.print(f"{where} [red]failed[/red] {cell.label}: {report['error']}")
        elif not quiet:
            console.print(f"{where} {'done' if report['status'] == 'ran' else 'skipped'} "
                          f"{cell.label}")

    return execute(cells, out, opts, rerun=rerun, on_result=on_result)
