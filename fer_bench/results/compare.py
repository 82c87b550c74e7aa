"""A leaderboard's statistics: bootstrap intervals per row and paired tests (bootstrap on the
test metric, McNemar on accuracy) of each row against the top row and an optional baseline,
from the per-image predictions each cell stored (results/stats.py does the arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import stats
from .rows import LeaderboardRow
from .store import PREDICTIONS_FILE, CellResult, cross_predictions_file


@dataclass(frozen=True)
class StatsOptions:
    """Bootstrap settings; n_resamples = 0 turns statistics off (fast, no p-values)."""

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    alpha: float = 0.05


def predictions_path(result: CellResult, dataset: str | None = None) -> Path | None:
    """Where a cell's per-image predictions live: `predictions.npz` for its own test split; for
    a cross-dataset view the file the cross block names (`predictions`), else
    `predictions-<slug>.npz`."""
    cdir = result.dir
    if cdir is None:
        return None
    if dataset is None or dataset == result.dataset:
        return cdir / PREDICTIONS_FILE
    block = result.cross.get(dataset) or {}
    name = block.get("predictions") if isinstance(block.get("predictions"), str) else None
    path = (cdir / (name or cross_predictions_file(dataset))).resolve()
    return path if path.parent == cdir.resolve() else None  # never a file outside the cell


_PRED_CACHE: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}


def load_predictions(path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, preds) from a predictions file, or None when it is missing or unreadable."""
    if path is None:
        return None
    key = str(path)
    if key not in _PRED_CACHE:
        try:
            with np.load(path, allow_pickle=False) as z:
                _PRED_CACHE[key] = (np.asarray(z["labels"]), np.asarray(z["preds"]))
        except (OSError, KeyError, ValueError):
            _PRED_CACHE[key] = None
    return _PRED_CACHE[key]


def _stacked(row: LeaderboardRow, dataset: str | None,
             seeds: list[int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(seeds x images) labels and predictions of a row's members (the given seeds, in order),
    or None when any is missing or they are not on the same test images."""
    by_seed = dict(zip(row.seeds, row.members, strict=True))
    chosen = [by_seed[s] for s in (seeds if seeds is not None else row.seeds)]
    loaded = [load_predictions(predictions_path(m, dataset)) for m in chosen]
    if any(x is None for x in loaded):
        return None
    labels = loaded[0][0]
    if any(x[0].shape != labels.shape or not np.array_equal(x[0], labels) for x in loaded):
        return None
    return np.stack([x[0] for x in loaded]), np.stack([x[1] for x in loaded])


def row_intervals(row: LeaderboardRow, dataset: str | None, o: StatsOptions) -> dict | None:
    """The row's intervals: those stored with a single cell's metrics when they used the same
    settings, else a bootstrap over its predictions (or its confusion matrix without them)."""
    if len(row.views) == 1:
        stored = row.views[0].get("ci")
        if (isinstance(stored, dict) and stored.get("n_resamples") == o.n_resamples
                and stored.get("level") == o.level and stored.get("seed") == o.seed):
            return stored
    data = _stacked(row, dataset)
    if data is not None:
        return stats.intervals(*data, row.classes, o.n_resamples, o.seed, o.level)
    if row.confusion is not None:  # no predictions: image order is not needed for intervals
        return stats.intervals_from_confusion(row.confusion, row.classes, o.n_resamples,
                                              o.seed, o.level)
    return None


def _seed_pairs(row: LeaderboardRow, ref: LeaderboardRow) -> list[tuple[int, int]]:
    """Seeds compared: those both rows ran (matched by seed); with none in common, the i-th
    smallest seed of each (matched by order)."""
    common = sorted(set(row.seeds) & set(ref.seeds))
    if common:
        return [(s, s) for s in common]
    return list(zip(row.seeds, ref.seeds, strict=False))


def compare(row: LeaderboardRow, ref: LeaderboardRow, metric: str, dataset: str | None,
            o: StatsOptions) -> dict | None:
    """Paired bootstrap of metric(row) - metric(ref) and McNemar's test for accuracy on the
    same test images, over matched seeds; None when predictions are missing or the test images
    differ."""
    if row.classes != ref.classes:
        return None
    pairs = _seed_pairs(row, ref)
    a = _stacked(row, dataset, [p[0] for p in pairs])
    b = _stacked(ref, dataset, [p[1] for p in pairs])
    if a is None or b is None or a[0].shape != b[0].shape or not np.array_equal(a[0], b[0]):
        return None
    boot = stats.paired_bootstrap(a[0], a[1], b[1], row.classes, metric, o.n_resamples,
                                  o.seed, o.level)
    mc = stats.mcnemar(a[0], a[1], b[1])
    return {"metric": boot["metric"], "diff": boot["diff"], "ci": boot["ci"], "p": boot["p"],
            "mcnemar_p": mc["p"], "discordant": [mc["a_only"], mc["b_only"]],
            "seed_pairs": [list(p) for p in pairs], "n_resamples": o.n_resamples}


def add_statistics(rows: list[LeaderboardRow], dataset: str | None, o: StatsOptions,
                   base: LeaderboardRow | None) -> None:
    """Intervals for every row; each row below the top tested against it (tied when p >=
    alpha), and every row against the baseline when there is one."""
    if not o.n_resamples:
        return
    for r in rows:
        r.ci = row_intervals(r, dataset, o)
    for r in rows[1:]:
        r.vs_top = compare(r, rows[0], r.test_metric, dataset, o)
        if r.vs_top and r.vs_top["p"] is not None:
            r.p_vs_top = r.vs_top["p"]
            r.tied_with_top = r.p_vs_top >= o.alpha
    if base is not None:
        for r in rows:
            if r is not base:
                r.vs_baseline = compare(r, base, r.test_metric, dataset, o)
                r.p_vs_baseline = (r.vs_baseline or {}).get("p")
