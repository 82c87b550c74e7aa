"""`fer-bench leaderboard`: rank the cells of one or more runs, with intervals and paired tests."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..errors import ConfigError
from .common import app, console, err_console

CI_MODES = ("sort", "all", "none")


def _stats_options(resamples: int, seed: int, level: float):
    from ..results.leaderboard import StatsOptions

    if resamples < 0:
        raise ConfigError(f"--resamples {resamples}: expected 0 (no statistics) or more")
    if not 0 < level < 1:
        raise ConfigError(f"--level {level}: expected a confidence level in (0, 1), e.g. 0.95")
    return StatsOptions(n_resamples=resamples, seed=seed, level=level)


def _read_bench(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--bench {path}: cannot read it as JSON ({e})") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) and "backbone" in r
                                             for r in data):
        raise ConfigError(f"--bench {path}: expected the JSON list `fer-bench bench --out` "
                          "writes (rows with backbone, head, mode, samples_per_s, mfu)")
    return data


def _views(results: list[dict], dataset: str | None) -> list[str | None]:
    """Which dataset views to show: None = each cell's own test split; `all` = one per dataset."""
    from ..results.leaderboard import eval_datasets

    known = eval_datasets(results)
    if dataset is None:
        return [None]
    if dataset == "all":
        return list(known) or [None]
    if dataset not in known:
        raise ConfigError(f"--dataset {dataset!r}: no result was evaluated on it; evaluated on: "
                          + (", ".join(known) or "nothing") + " (or `all`)")
    return [dataset]


@app.command()
def leaderboard(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories (holding cells/); several are merged into one leaderboard.")],
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="table | md | csv | json | html")] = "table",
    sort: Annotated[str, typer.Option(help="fear_disgust | accuracy | balanced_accuracy | "
                                      "macro_f1 | recall:CLASS (or a class) | params_m | gmacs "
                                      "| train_s | images_per_s | train_images_per_s")
                ] = "fear_disgust",
    columns: Annotated[str | None, typer.Option(
        help="Comma-separated column keys (e.g. rank,label,fear_disgust,recall:fear,params_m); "
             "`+key,...` adds to the defaults.")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Also test every row against this one: a cell id (or prefix) or names such as "
             "fer_cnn/linear.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Evaluation dataset view: a training or cross-evaluation dataset spec, or `all` "
             "for one leaderboard per dataset. Default: each cell's own test split.")] = None,
    ci: Annotated[str, typer.Option(help="Show intervals for: sort (the sort metric) | all | "
                                    "none")] = "sort",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples (0: no statistics).")]
    = 1000,
    stats_seed: Annotated[int, typer.Option("--stats-seed", help="Bootstrap random seed.")] = 0,
    level: Annotated[float, typer.Option(help="Interval confidence level.")] = 0.95,
    bench: Annotated[Path | None, typer.Option(
        help="A `fer-bench bench --out` JSON: adds its samples/s and MFU per backbone.")]
    = None,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write to this file instead of stdout.")]
    = None,
) -> None:
    """Rank cells (default: fear/disgust recall, ties by accuracy) with bootstrap intervals and
    paired tests against the top row; † marks rows not significantly different from it."""
    from ..results.leaderboard import load_results
    from ..results.render import FORMATS

    if ci not in CI_MODES:
        raise ConfigError(f"--ci {ci!r}: expected one of {', '.join(CI_MODES)}")
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected table, md, csv, json or html")
    options = _stats_options(resamples, stats_seed, level)
    results, dups = load_results(run_dirs)
    if dups:
        err_console.print(f"{len(dups)} cell(s) found in more than one directory; the first "
                          f"copy is used: {', '.join(sorted(set(dups))[:5])}")
    bench_rows = _read_bench(bench) if bench is not None else []
    boards = _boards(results, _views(results, dataset), sort, options, baseline, bench_rows,
                     columns, fmt)
    sort_key = next((rows[0].sort_key for _, rows, _ in boards if rows), sort)
    name = ", ".join(str(d) for d in run_dirs)
    if fmt == "table":
        out = console if output is None else Console(file=io.StringIO(), width=200)
        _print_tables(out, boards, name, ci, sort_key)
        _table_notes(results, dataset)
        if output is None:
            return
        text = out.file.getvalue()
    else:
        text = _text(fmt, boards, name, ci, sort_key, dataset == "all", bool(columns))
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n")
        err_console.print(f"wrote {output}")
    else:
        typer.echo(text)


Board = tuple[str | None, list, list[str]]  # (dataset view, its rows, its columns)


def _boards(results, views, sort, options, baseline, bench_rows, columns, fmt) -> list[Board]:
    """One ranked board per dataset view, with its columns."""
    from ..results.leaderboard import attach_bench, build_rows, parse_columns

    boards = []
    for view in views:
        rows = build_rows(results, sort, dataset=view, options=options, baseline=baseline)
        attach_bench(rows, bench_rows)
        cols = parse_columns(columns, rows, compact=fmt == "table")
        if view is not None and "eval_dataset" not in cols and len(views) > 1:
            cols = [c for c in cols if c != "dataset"]
        boards.append((view, rows, cols))
    return boards


def _heading(name: str, view: str | None) -> str:
    return f"{name}" + (f" — evaluated on {view}" if view else "")


def _print_tables(out: Console, boards: list[Board], name: str, ci: str, sort_key: str) -> None:
    from ..results.leaderboard import column_title, rich_table

    for view, rows, cols in boards:
        out.print(rich_table(rows, f"{_heading(name, view)}: ranked by "
                             f"{column_title(sort_key)}", cols, ci, sort_key))


def _table_notes(results, dataset: str | None) -> None:
    """Beside the terminal table: the failed cells, and the other datasets evaluated on."""
    failed = [r for r in results if not r.ok]
    if failed:
        err_console.print(f"{len(failed)} failed cell(s) not ranked: "
                          + ", ".join(r.cell_id for r in failed))
    cross = sorted({d for r in results for d in r.cross})
    if cross and dataset is None:
        err_console.print("also evaluated on: " + ", ".join(cross)
                          + " (see --dataset SPEC or --dataset all)")


def _text(fmt: str, boards: list[Board], name: str, ci: str, sort_key: str, every_view: bool,
          chosen_columns: bool) -> str:
    """Every board in a text format: JSON (a list, or views -> lists with --dataset all), one
    HTML page, or Markdown / CSV blocks."""
    from ..results.leaderboard import html_page, html_table, render

    if fmt == "json":
        if not every_view:
            return json.dumps([r.to_json() for r in boards[0][1]], indent=2)
        return json.dumps({str(v): [r.to_json() for r in rows] for v, rows, _ in boards},
                          indent=2)
    if fmt == "html":
        return html_page([(_heading(name, v) if len(boards) > 1 else "",
                           html_table(rows, cols, ci, sort_key)) for v, rows, cols in boards],
                         f"fer-bench leaderboard: {name}")
    return "\n\n".join(render(rows, fmt, _heading(name, v),
                              cols if (chosen_columns or fmt != "csv") else None, ci, sort_key)
                       for v, rows, cols in boards)
