"""Statistics over test images: bootstrap intervals per cell, paired tests between cells.

Every metric fer-bench reports derives from the confusion matrix, so one bootstrap replicate is
just a confusion matrix of resampled images. Resampling is vectorised: each image is reduced to a
code `true * K + pred`, and all replicates' confusion matrices come from one multinomial draw over
the distinct code patterns and one matrix product (1000 replicates of 3,589 images: milliseconds).

Several seeds of one configuration are handled as *clustered* data: arrays of shape
(seeds, images), one row per seed, all rows on the same test images. A replicate resamples images
and applies the same images to every seed; its value is the mean over seeds of each seed's metric
(the number the leaderboard ranks on), so the interval is over test images for the seed-mean.
Seed-to-seed spread is reported separately (mean ± std) by the leaderboard.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..classes import FEAR_DISGUST
from ..errors import FerBenchError

BASE_METRICS = ("fear_disgust", "accuracy", "balanced_accuracy", "macro_f1")


def metric_names(classes: Sequence[str]) -> list[str]:
    return [*BASE_METRICS, *(f"recall:{c}" for c in classes)]


def _as_2d(a: np.ndarray | Sequence[int], what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise FerBenchError(f"{what}: expected a 1-D (images) or 2-D (seeds x images) array, "
                            f"got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _codes(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(seeds, images) codes true * K + pred, checked against the class count."""
    t, p = _as_2d(y_true, "labels"), _as_2d(y_pred, "predictions")
    if t.shape != p.shape:
        raise FerBenchError(f"labels {t.shape} and predictions {p.shape} differ in shape")
    if t.shape[1] == 0:
        raise FerBenchError("no test images to bootstrap")
    for name, a in (("labels", t), ("predictions", p)):
        if a.min() < 0 or a.max() >= n_classes:
            raise FerBenchError(f"{name} outside 0..{n_classes - 1} for {n_classes} classes")
    return t * n_classes + p


def confusion_codes(confusion: np.ndarray) -> np.ndarray:
    """Per-image codes (1 x images) that reproduce a confusion matrix: enough for unpaired
    intervals when a result has no stored predictions (image order does not matter there)."""
    cm = np.asarray(confusion, dtype=np.int64)
    return np.repeat(np.arange(cm.size), cm.ravel())[None, :]


def _resampled_confusions(codes_list: list[np.ndarray], n_classes: int, n_resamples: int,
                          seed: int) -> list[np.ndarray]:
    """Bootstrap confusion matrices (B x seeds x K x K) for each code array, all from the *same*
    resampled images (this is what makes comparisons paired).

    Resampling n images with replacement gives each image a Multinomial(n, 1/n) count; images
    with the same pattern of codes (true class and every prediction being compared) are
    interchangeable, so it is exactly equivalent, and far cheaper, to draw
    Multinomial(n, pattern_count / n) over the distinct patterns (at most 49 for one cell)."""
    n = codes_list[0].shape[1]
    kk = n_classes * n_classes
    stacked = np.concatenate(codes_list, axis=0)  # (rows, n): one row per seed per system
    patterns, inverse = np.unique(stacked.T, axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), minlength=len(patterns))
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, counts / counts.sum(), size=n_resamples)  # (B, patterns)
    # Replicate b's confusion: bincount of (b, code of each pattern) weighted by its draw count
    # (a scatter, not a BLAS product: no thread start-up, exact integers).
    offsets = (np.arange(n_resamples, dtype=np.int64) * kk)[:, None]
    out, row = [], 0
    for codes in codes_list:
        conf = np.empty((n_resamples, codes.shape[0], n_classes, n_classes), dtype=np.int64)
        for s in range(codes.shape[0]):
            flat = np.bincount((offsets + patterns[:, row + s][None, :]).ravel(),
                               weights=weights.ravel(), minlength=n_resamples * kk)
            conf[:, s] = np.rint(flat).astype(np.int64).reshape(n_resamples, n_classes,
                                                                 n_classes)
        row += codes.shape[0]
        out.append(conf)
    return out


def seed_mean_table(confusions: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
    """`metrics_table` for (B x seeds x K x K): each seed's metric, averaged over seeds."""
    b, s = confusions.shape[:2]
    table = metrics_table(confusions.reshape(b * s, *confusions.shape[2:]), classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # undefined for every seed: NaN
        return {k: np.nanmean(v.reshape(b, s), 1) for k, v in table.items()}


def metrics_table(confusions: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
    """Every reported metric for a stack of confusion matrices (B x K x K) -> name: (B,) array.
    Same definitions as `metrics.metrics_from_confusion` (recall undefined -> NaN)."""
    cm = np.asarray(confusions, dtype=np.float64)
    support, predicted, correct = cm.sum(2), cm.sum(1), np.diagonal(cm, axis1=1, axis2=2)
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, correct / support, np.nan)
        precision = np.where(predicted > 0, correct / predicted, 0.0)
        r0 = np.nan_to_num(recall)
        f1 = np.where(precision + r0 > 0, 2 * precision * r0 / (precision + r0), 0.0)
        n_present = present.sum(1)
        out: dict[str, np.ndarray] = {
            "accuracy": correct.sum(1) / cm.sum((1, 2)),
            "balanced_accuracy": np.where(n_present > 0, np.nansum(recall, 1) / n_present,
                                          np.nan),
            "macro_f1": np.where(n_present > 0, (f1 * present).sum(1) / n_present, np.nan),
        }
    for i, c in enumerate(classes):
        out[f"recall:{c}"] = recall[:, i]
    fd = [recall[:, list(classes).index(c)] for c in FEAR_DISGUST if c in classes]
    if fd:
        stacked = np.stack(fd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # neither class drawn: NaN, dropped
            out["fear_disgust"] = np.nanmean(stacked, 0)
    else:
        out["fear_disgust"] = np.full(cm.shape[0], np.nan)
    return out


def _quantiles(values: np.ndarray, level: float) -> list[float] | None:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    alpha = (1 - level) / 2
    lo, hi = np.quantile(v, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def _check(n_resamples: int, level: float) -> None:
    if n_resamples < 1:
        raise FerBenchError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < level < 1:
        raise FerBenchError(f"level must be in (0, 1), got {level}")


def intervals(y_true, y_pred, classes: Sequence[str], n_resamples: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict:
    """Percentile bootstrap intervals over test images for every metric.

    y_true, y_pred: (images,) or, for several seeds on the same images, (seeds, images).
    Returns {"fear_disgust": [lo, hi], "accuracy": ..., "recall:fear": ..., "n_resamples",
    "seed", "level"}; a metric undefined on every replicate (class absent) maps to None."""
    _check(n_resamples, level)
    codes = _codes(y_true, y_pred, len(classes))
    return _intervals_from_codes(codes, classes, n_resamples, seed, level)


def intervals_from_confusion(confusion, classes: Sequence[str], n_resamples: int = 1000,
                             seed: int = 0, level: float = 0.95) -> dict:
    """`intervals` for a result that stores only its confusion matrix."""
    _check(n_resamples, level)
    return _intervals_from_codes(confusion_codes(confusion), classes, n_resamples, seed, level)


def _intervals_from_codes(codes: np.ndarray, classes: Sequence[str], n_resamples: int,
                          seed: int, level: float) -> dict:
    (conf,) = _resampled_confusions([codes], len(classes), n_resamples, seed)
    table = seed_mean_table(conf, classes)
    out: dict = {name: _quantiles(table[name], level) for name in metric_names(classes)}
    out.update(n_resamples=int(n_resamples), seed=int(seed), level=float(level))
    return out


def point_metric(y_true, y_pred, classes: Sequence[str], metric: str) -> float:
    """A metric on all test images, averaged over seeds (the value the bootstrap is about)."""
    codes = _codes(y_true, y_pred, len(classes))
    k = len(classes)
    cms = np.stack([np.bincount(c, minlength=k * k).reshape(k, k) for c in codes])
    return float(seed_mean_table(cms[None], classes)[_metric_key(metric, classes)][0])


def _metric_key(metric: str, classes: Sequence[str]) -> str:
    key = f"recall:{metric}" if metric in classes else metric
    if key not in metric_names(classes):
        raise FerBenchError(f"metric {metric!r}: expected one of {', '.join(BASE_METRICS)}, a "
                            f"class or recall:CLASS (classes: {', '.join(classes)})")
    return key


def paired_bootstrap(y_true, pred_a, pred_b, classes: Sequence[str], metric: str = "fear_disgust",
                     n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap of metric(a) - metric(b) on the same test images.

    Both systems are scored on the same resampled images in every replicate. The two-sided
    p-value inverts the percentile interval: p = 2 * min(P*(d <= 0), P*(d >= 0)), with the +1
    correction so it is never 0 from a finite number of replicates. Identical predictions give
    p = 1. Returns {"metric", "diff", "ci": [lo, hi], "p", "n_resamples", "seed", "level"}."""
    _check(n_resamples, level)
    key = _metric_key(metric, classes)
    k = len(classes)
    ca, cb = _codes(y_true, pred_a, k), _codes(y_true, pred_b, k)
    conf_a, conf_b = _resampled_confusions([ca, cb], k, n_resamples, seed)
    d = seed_mean_table(conf_a, classes)[key] - seed_mean_table(conf_b, classes)[key]
    d = d[np.isfinite(d)]
    diff = point_metric(y_true, pred_a, classes, key) - point_metric(y_true, pred_b, classes, key)
    if d.size == 0:
        return {"metric": key, "diff": diff, "ci": None, "p": None,
                "n_resamples": int(n_resamples), "seed": int(seed), "level": float(level)}
    m = d.size
    p = 2 * min((1 + np.sum(d <= 0)) / (m + 1), (1 + np.sum(d >= 0)) / (m + 1))
    return {"metric": key, "diff": diff, "ci": _quantiles(d, level), "p": float(min(1.0, p)),
            "n_resamples": int(n_resamples), "seed": int(seed), "level": float(level)}


def mcnemar(y_true, pred_a, pred_b) -> dict:
    """McNemar's exact test for accuracy: discordant pairs b (a right, b wrong) and c (a wrong,
    b right) are Binomial(b + c, 1/2) under equal accuracy. Two-sided exact p (1 when b+c = 0).
    Inputs may be (seeds, images): pairs then pool over seeds (see docs/leaderboard.md)."""
    from scipy.stats import binomtest

    t, a, b = (_as_2d(x, name) for x, name in ((y_true, "labels"), (pred_a, "predictions a"),
                                                (pred_b, "predictions b")))
    if not t.shape == a.shape == b.shape:
        raise FerBenchError(f"McNemar: shapes differ: {t.shape}, {a.shape}, {b.shape}")
    ra, rb = a == t, b == t
    n_ab, n_ba = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    p = 1.0 if n_ab + n_ba == 0 else float(binomtest(n_ab, n_ab + n_ba, 0.5).pvalue)
    return {"a_only": n_ab, "b_only": n_ba, "p": p}


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; 0 for one value) across seeds, ignoring missing values."""
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if vals.size == 0:
        return None, None
    return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0
