"""`fer-bench report`: a self-contained HTML report (table, plots, configs) for one or more runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import app, err_console


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories (holding cells/); several are merged into one report.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write; the plots "
                                         "go beside it in <name>_plots/.")] = Path("report.html"),
    sort: Annotated[str, typer.Option(help="Rank by: fear_disgust | accuracy | "
                                      "balanced_accuracy | macro_f1 | recall:CLASS | a cost "
                                      "column.")] = "fear_disgust",
    top: Annotated[int, typer.Option(help="Rows compared in the per-class recall plot.")] = 5,
    max_confusions: Annotated[int, typer.Option(help="Confusion matrices drawn (top rows).")]
    = 24,
    baseline: Annotated[str | None, typer.Option(
        help="Also test every row against this one (cell id or names, e.g. fer_cnn/linear).")]
    = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples (0: no statistics).")]
    = 1000,
    stats_seed: Annotated[int, typer.Option("--stats-seed", help="Bootstrap random seed.")] = 0,
    level: Annotated[float, typer.Option(help="Interval confidence level.")] = 0.95,
) -> None:
    """Write one HTML file (images embedded, opens offline) ranking the cells with intervals,
    with confusion matrices, per-class recall, fear/disgust confusions, accuracy vs cost and
    every cell's config."""
    from ..results.report import build_report
    from .leaderboard import _stats_options

    out = build_report(run_dirs, output, sort=sort, top=top, max_confusions=max_confusions,
                       options=_stats_options(resamples, stats_seed, level), baseline=baseline)
    err_console.print(f"wrote {out['html']} ({out['rows']} rows) and {len(out['plots'])} plots "
                      f"in {out['html'].parent / (out['html'].stem + '_plots')}/")
