"""`fer-bench run`: a matrix with a progress display, then its leaderboard."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FerBenchError
from .common import app, console, csv_list, err_console, load_plugins


@app.command()
def run(
    benchmark: Annotated[str | None, typer.Option(
        "--benchmark", "-b", help="Benchmark TOML (path or name in benchmarks/). "
        "Default: demo when no axis flag is given.")] = None,
    backbones: Annotated[str | None, typer.Option(help="Comma-separated backbones (cards, "
                                                  "timm:NAME, open_clip:MODEL@TAG).")] = None,
    prompts: Annotated[str | None, typer.Option(help="Comma-separated prompt sets.")] = None,
    heads: Annotated[str | None, typer.Option(help="Comma-separated heads.")] = None,
    text_encoders: Annotated[str | None, typer.Option(
        "--text-encoders", "--text-encoder", help="Comma-separated text encoders "
        "(default: the backbone's paired tower, else minilm).")] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "--datasets", help="Comma-separated dataset specs (synfer, synfer:n=8000).")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated integer seeds.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    train: Annotated[str | None, typer.Option(
        "--train", help="Regime: full | image | text | frozen.")] = None,
    image_size: Annotated[int | None, typer.Option(
        help="Resize inputs to this size (backbones without a fixed input size).")] = None,
    no_pretrained: Annotated[bool, typer.Option(
        "--no-pretrained", help="Random init for every backbone (recorded in results).")] = False,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/<name>).")
                   ] = None,
    rerun: Annotated[bool, typer.Option(help="Re-run cells that already have a result.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the cells; load and train nothing.")
                       ] = False,
    plugin: Annotated[list[Path] | None, typer.Option(
        help="Python file registering backbones/heads/datasets (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Run a backbone x prompt x head x seed matrix and print its leaderboard."""
    from ..plan import Benchmark as Bench
    from ..plan import coerce_train, expand, find_benchmark, load_benchmark

    load_plugins(plugin)
    axes = {"backbones": csv_list(backbones), "prompts": csv_list(prompts),
            "heads": csv_list(heads), "text_encoders": csv_list(text_encoders),
            "datasets": csv_list(dataset)}
    if seeds:
        try:
            axes["seeds"] = [int(s) for s in csv_list(seeds) or []]
        except ValueError:
            raise FerBenchError(f"--seeds {seeds!r}: expected comma-separated integers") from None
    if benchmark is None and not axes["backbones"]:
        benchmark = "demo"
    bench = load_benchmark(find_benchmark(benchmark)) if benchmark else Bench()
    for axis, values in axes.items():
        if values is not None:
            if not values:
                raise FerBenchError(f"--{axis.replace('_', '-')} is empty")
            setattr(bench, axis, values)
    if not bench.backbones:
        raise FerBenchError("no backbones: pass --backbones or a --benchmark file")
    flags = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "regime": train,
             "image_size": image_size, "device": device}
    flags = {k: v for k, v in flags.items() if v is not None}
    if no_pretrained:
        flags["pretrained"] = False
    bench.train = replace(bench.train, **coerce_train(flags, "command line"))
    bench.train.validate("command line")
    cells = expand(bench)
    out = out or Path("runs") / bench.name

    from ..runner import validate_cells

    if dry_run:
        validate_cells(cells)
        _print_plan(cells, out)
        return
    _run_with_progress(cells, out, rerun, quiet, bench.name)


def _print_plan(cells, out: Path) -> None:
    from rich.table import Table

    from ..runner import is_complete

    table = Table(title=f"{len(cells)} cells -> {out}", title_justify="left")
    for col in ("cell id", "backbone", "head", "prompts", "text encoder", "dataset", "seed",
                "status"):
        table.add_column(col)
    for c in cells:
        done = "done (skip)" if is_complete(out, c) else "to run"
        table.add_row(c.cell_id, c.backbone, c.head, c.prompts or "-", c.text_encoder or "-",
                      c.dataset, str(c.seed), done)
    console.print(table)


def _run_with_progress(cells, out: Path, rerun: bool, quiet: bool, name: str) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..results import read_results
    from ..results.leaderboard import build_rows, rich_table
    from ..runner import run_plan

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        disable=quiet, transient=False)
    matrix = progress.add_task("[bold]matrix", total=len(cells))
    current = progress.add_task("", total=1, visible=False)

    def start(cell, i):
        progress.update(current, description=f"  {cell.label}", completed=0, total=1,
                        visible=True)

    def step(info):
        progress.update(current, total=info["steps"], completed=info["step"],
                        description=f"  epoch {info['epoch']}/{info['epochs']} "
                                    f"loss {info['loss']:.3f}")

    def end(cell, result):
        progress.advance(matrix)
        if result["status"] != "ok":
            progress.console.print(f"[red]failed[/red] {cell.label}: {result['error']}")
        elif not quiet:
            m = result["metrics"]
            progress.console.print(
                f"[green]done[/green] {cell.label}: fear/disgust "
                f"{100 * (m['fear_disgust'] or 0):.1f}  accuracy {100 * m['accuracy']:.1f}  "
                f"({result['timing']['train_s']:.0f} s)")

    with progress:
        summary = run_plan(cells, out, rerun=rerun, on_cell_start=start, on_progress=step,
                           on_cell_end=lambda c, r: end(c, r))
        progress.update(matrix, completed=len(cells))
        progress.update(current, visible=False)
    results = [r for r in read_results(out) if r["cell_id"] in {c.cell_id for c in cells}]
    console.print(rich_table(build_rows(results), f"{name}: ranked by fear/disgust (test, %)"))
    console.print(f"{len(summary.ran)} ran, {len(summary.skipped)} skipped (already complete), "
                  f"{len(summary.failed)} failed; results in {out}/cells/")
    if summary.failed:
        for cid, err in summary.failed.items():
            err_console.print(f"[red]failed[/red] {cid}: {err}")
        raise typer.Exit(1)


