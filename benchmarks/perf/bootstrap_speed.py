"""Bootstrap speed, measured side by side (ratios, not absolute targets).

fer-bench's `stats.intervals` (one multinomial draw over the distinct (true, predicted) patterns,
one weighted bincount) against the textbook loop (draw image indices, rebuild the confusion
matrix, compute the metrics, once per replicate), on a FER2013 PrivateTest-sized test set
(3,589 images, 7 classes). Also the paired test and a three-seed row.

    python benchmarks/perf/bootstrap_speed.py [--n 3589] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fer_bench.classes import CANONICAL
from fer_bench.results.metrics import compute_metrics
from fer_bench.results.stats import intervals, paired_bootstrap


def naive_intervals(y: np.ndarray, p: np.ndarray, b: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    keys = ["fear_disgust", "accuracy", "balanced_accuracy", "macro_f1"]
    vals: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(b):
        i = rng.integers(0, len(y), len(y))
        m = compute_metrics(y[i], p[i], CANONICAL)
        for k in keys:
            vals[k].append(m[k])
    return {k: np.quantile(v, [0.025, 0.975]).tolist() for k, v in vals.items()}


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3589)
    ap.add_argument("--resamples", type=int, default=1000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, a.n)
    p = np.where(rng.random(a.n) < 0.65, y, rng.integers(0, 7, a.n))
    p2 = np.where(rng.random(a.n) < 0.65, y, rng.integers(0, 7, a.n))
    fast = timed(lambda: intervals(y, p, CANONICAL, a.resamples))
    slow = timed(lambda: naive_intervals(y, p, a.resamples), repeats=1)
    pair = timed(lambda: paired_bootstrap(y, p, p2, CANONICAL, "fear_disgust", a.resamples))
    seeds = timed(lambda: intervals(np.stack([y] * 3), np.stack([p, p2, p]), CANONICAL,
                                    a.resamples))
    f, s = intervals(y, p, CANONICAL, a.resamples), naive_intervals(y, p, a.resamples)
    print(f"{a.n} images, {a.resamples} resamples (best of 3)")
    print(f"  intervals (all metrics + 7 recalls): {1e3 * fast:8.1f} ms")
    print(f"  textbook loop (4 metrics):           {1e3 * slow:8.1f} ms   ratio {slow / fast:.0f}x")
    print(f"  paired bootstrap (two systems):      {1e3 * pair:8.1f} ms")
    print(f"  intervals, three seeds:              {1e3 * seeds:8.1f} ms")
    print(f"  accuracy interval fast {np.round(f['accuracy'], 4).tolist()} vs loop "
          f"{np.round(s['accuracy'], 4).tolist()} (different random draws, same distribution)")


if __name__ == "__main__":
    main()
