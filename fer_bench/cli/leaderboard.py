"""`fer-bench leaderboard`: rank a run's cells."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import Fmt, app, console, err_console


@app.command()
def leaderboard(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holding cells/).")],
    fmt: Fmt = "table",
    sort: Annotated[str, typer.Option(help="fear_disgust | accuracy | balanced_accuracy | "
                                      "macro_f1 | a class | recall:CLASS")] = "fear_disgust",
) -> None:
    """Rank a run's cells (default: fear/disgust recall, ties by accuracy)."""
    from ..results import read_results
    from ..results.leaderboard import build_rows, render, rich_table

    results = read_results(run_dir)
    rows = build_rows(results, sort)
    failed = [r for r in results if r.get("status") != "ok"]
    if fmt == "table":
        console.print(rich_table(rows, f"{run_dir}: ranked by {sort} (test, %)"))
        if failed:
            err_console.print(f"{len(failed)} failed cell(s) not ranked: "
                              + ", ".join(r["cell_id"] for r in failed))
    else:
        typer.echo(render(rows, fmt, str(run_dir)))


