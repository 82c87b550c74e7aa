"""The leaderboard: result files -> ranked rows (rows.py) with bootstrap intervals and paired
tests against the top row and an optional baseline (compare.py), shown through columns.py and
render.py. `build_rows` is the one entry point; the names callers use are re-exported here."""

from __future__ import annotations

from .columns import column_title, default_columns, footnote, parse_columns
from .compare import StatsOptions, add_statistics
from .render import csv_text, html_page, html_table, md_text, render, rich_table
from .rows import (
    METRICS,
    LeaderboardRow,
    attach_bench,
    eval_datasets,
    find_baseline,
    load_results,
    metric_value,
    normalise_key,
    rank_rows,
)
from .store import CellResult


def build_rows(results: list[CellResult], sort: str = "fear_disgust", *,
               dataset: str | None = None, options: StatsOptions | None = None,
               baseline: str | None = None, test_metric: str | None = None
               ) -> list[LeaderboardRow]:
    """Rank ok results (seeds aggregated). `dataset` picks a view: a training dataset or a
    cross-dataset spec (rows without that evaluation are left out); None = each cell's own test
    split. Statistics (intervals, paired tests against the top row and the baseline) run unless
    `options.n_resamples == 0`. The paired test uses `test_metric`, by default the sort key when
    it is a metric, else fear_disgust."""
    options = options or StatsOptions()
    rows, sort = rank_rows(results, sort, dataset)
    if test_metric is None:
        test_metric = sort if sort in METRICS or sort.startswith("recall:") else "fear_disgust"
    test_metric = normalise_key(test_metric, {c for r in rows for c in r.per_class_accuracy})
    base = find_baseline(rows, baseline) if baseline else None
    for r in rows:
        r.sort_key, r.test_metric = sort, test_metric
        if base is not None:
            r.baseline = base.label
    add_statistics(rows, dataset, options, base)
    return rows


__all__ = ["LeaderboardRow", "StatsOptions", "attach_bench", "build_rows", "column_title",
           "csv_text", "default_columns", "eval_datasets", "footnote", "html_page",
           "html_table", "load_results", "md_text", "metric_value", "parse_columns", "render",
           "rich_table"]
