"""Bootstrap intervals and paired tests: coverage on simulated predictions, hand-computed cases."""

import numpy as np
import pytest

from fer_bench.classes import CANONICAL
from fer_bench.errors import FerBenchError
from fer_bench.results.metrics import compute_metrics, metrics_from_confusion
from fer_bench.results.stats import (
    intervals,
    intervals_from_confusion,
    mcnemar,
    mean_std,
    metrics_table,
    paired_bootstrap,
)

# FER2013-like class shares (disgust rare) and per-class recall of a simulated classifier.
PRIOR = np.array([0.14, 0.03, 0.14, 0.25, 0.17, 0.11, 0.16])
RECALL = np.array([0.55, 0.40, 0.35, 0.85, 0.50, 0.75, 0.60])


def simulate(rng, n: int, recall: np.ndarray = RECALL) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(len(PRIOR), size=n, p=PRIOR)
    correct = rng.random(n) < recall[y]
    wrong = (y + rng.integers(1, len(PRIOR), size=n)) % len(PRIOR)  # any other class
    return y, np.where(correct, y, wrong)


def population_metrics() -> dict:
    """The metrics of the simulated classifier on infinitely many images."""
    k = len(PRIOR)
    cm = np.zeros((k, k))
    for i in range(k):
        cm[i] = PRIOR[i] * (1 - RECALL[i]) / (k - 1)
        cm[i, i] = PRIOR[i] * RECALL[i]
    return metrics_table(cm[None] * 1e6, CANONICAL)


def test_intervals_cover_the_true_value_at_the_stated_rate():
    truth = {k: float(v[0]) for k, v in population_metrics().items()}
    rng = np.random.default_rng(1234)
    keys = ["accuracy", "balanced_accuracy", "macro_f1", "fear_disgust", "recall:fear",
            "recall:happy"]
    hits = dict.fromkeys(keys, 0)
    n_sets = 200
    for i in range(n_sets):
        y, p = simulate(rng, 1000)
        ci = intervals(y, p, CANONICAL, n_resamples=500, seed=i)
        for k in keys:
            lo, hi = ci[k]
            hits[k] += lo <= truth[k] <= hi
    coverage = {k: v / n_sets for k, v in hits.items()}
    for k, c in coverage.items():
        assert 0.90 <= c <= 0.99, (k, coverage)


def test_intervals_contract_and_point_estimate_inside():
    rng = np.random.default_rng(0)
    y, p = simulate(rng, 800)
    ci = intervals(y, p, CANONICAL, n_resamples=300, seed=7, level=0.9)
    m = compute_metrics(y, p, CANONICAL)
    assert (ci["n_resamples"], ci["seed"], ci["level"]) == (300, 7, 0.9)
    expected = {"fear_disgust", "accuracy", "balanced_accuracy", "macro_f1",
                *(f"recall:{c}" for c in CANONICAL)}
    assert expected | {"n_resamples", "seed", "level"} == set(ci)
    for k in expected:
        point = m[k] if ":" not in k else m["per_class_accuracy"][k[7:]]
        assert ci[k][0] <= point <= ci[k][1], k
        assert ci[k][1] - ci[k][0] > 0
    # A wider level gives a wider interval; the same seed gives the same numbers.
    wide = intervals(y, p, CANONICAL, n_resamples=300, seed=7, level=0.99)
    assert wide["accuracy"][0] <= ci["accuracy"][0] and wide["accuracy"][1] >= ci["accuracy"][1]
    assert intervals(y, p, CANONICAL, n_resamples=300, seed=7, level=0.9) == ci
    assert intervals(y, p, CANONICAL, n_resamples=300, seed=8, level=0.9) != ci


def test_multinomial_resampling_matches_resampling_images():
    """The pattern-multinomial shortcut has the same distribution as drawing image indices."""
    rng = np.random.default_rng(3)
    y, p = simulate(rng, 500)
    fast = intervals(y, p, CANONICAL, n_resamples=4000, seed=1)
    idx = np.random.default_rng(2).integers(0, len(y), size=(4000, len(y)))
    acc = (y[idx] == p[idx]).mean(1)
    fear = np.array([(p[i][y[i] == 2] == 2).mean() for i in idx[:1500]])
    assert np.allclose(fast["accuracy"], np.quantile(acc, [0.025, 0.975]), atol=0.006)
    assert np.allclose(fast["recall:fear"], np.quantile(fear, [0.025, 0.975]), atol=0.03)


def test_intervals_from_confusion_equal_intervals_from_predictions():
    rng = np.random.default_rng(5)
    y, p = simulate(rng, 600)
    cm = compute_metrics(y, p, CANONICAL)["confusion"]
    assert intervals_from_confusion(cm, CANONICAL, 200, 4) == intervals(y, p, CANONICAL, 200, 4)


def test_seeds_on_the_same_images():
    rng = np.random.default_rng(6)
    y, p = simulate(rng, 400)
    one = intervals(y, p, CANONICAL, 300, 0)
    # The same predictions under three seeds: the seed-mean metric has the same intervals.
    three = intervals(np.stack([y] * 3), np.stack([p] * 3), CANONICAL, 300, 0)
    for k in ("accuracy", "fear_disgust", "recall:sad", "macro_f1"):
        assert three[k] == pytest.approx(one[k])
    # Two seeds that disagree: each replicate averages the seeds' own metrics, so the interval
    # is about the seed-mean (for macro-F1 it differs from the metric of the pooled confusion).
    _, p2 = simulate(rng, 400, RECALL[::-1])
    two = intervals(np.stack([y, y]), np.stack([p, p2]), CANONICAL, 1000, 0)
    for k in ("macro_f1", "accuracy", "recall:fear"):
        per_seed = [compute_metrics(y, q, CANONICAL) for q in (p, p2)]
        v = [m[k] if ":" not in k else m["per_class_accuracy"][k[7:]] for m in per_seed]
        assert two[k][0] <= np.mean(v) <= two[k][1], k
    pooled = metrics_from_confusion(np.add(*(m["confusion"] for m in per_seed)), CANONICAL)
    assert pooled["macro_f1"] != pytest.approx(np.mean([m["macro_f1"] for m in per_seed]))
    with pytest.raises(FerBenchError, match="differ in shape"):
        intervals(np.stack([y] * 2), p, CANONICAL)


def test_metrics_table_agrees_with_results_metrics():
    rng = np.random.default_rng(8)
    y, p = simulate(rng, 300)
    p[p == 1] = 0  # nothing predicted as disgust: precision 0, F1 0 for that class
    y[y == 6] = 5  # no neutral images: recall undefined, left out of the averages
    m = compute_metrics(y, p, CANONICAL)
    t = metrics_table(np.asarray(m["confusion"])[None], CANONICAL)
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "fear_disgust"):
        assert t[k][0] == pytest.approx(m[k])
    assert np.isnan(t["recall:neutral"][0]) and m["per_class_accuracy"]["neutral"] is None
    assert metrics_from_confusion(m["confusion"], CANONICAL)["macro_f1"] == pytest.approx(
        t["macro_f1"][0])


def test_intervals_reject_bad_input():
    with pytest.raises(FerBenchError, match="labels outside 0..6"):
        intervals([0, 7], [0, 1], CANONICAL)
    with pytest.raises(FerBenchError, match="n_resamples"):
        intervals([0, 1], [0, 1], CANONICAL, n_resamples=0)
    with pytest.raises(FerBenchError, match="level"):
        intervals([0, 1], [0, 1], CANONICAL, level=1.5)
    with pytest.raises(FerBenchError, match="metric 'recall:nope'"):
        paired_bootstrap([0], [0], [0], CANONICAL, "recall:nope")


def test_mcnemar_hand_computed():
    y = np.zeros(20, dtype=int)
    # a right / b wrong on 1 image, a wrong / b right on 6: p = 2 * P(X <= 1), X ~ Bin(7, 1/2)
    a = np.array([0] * 1 + [1] * 6 + [0] * 10 + [1] * 3)
    b = np.array([1] * 1 + [0] * 6 + [0] * 10 + [1] * 3)
    res = mcnemar(y, a, b)
    assert (res["a_only"], res["b_only"]) == (1, 6)
    assert res["p"] == pytest.approx(2 * (1 + 7) / 2**7)  # 0.125
    # 0 vs 5 discordant pairs: 2 / 2^5; no discordant pairs: p = 1.
    assert mcnemar(y[:5], np.zeros(5, int), np.ones(5, int))["p"] == pytest.approx(2 / 32)
    assert mcnemar(y, a, a)["p"] == 1.0


def test_paired_bootstrap_hand_computed():
    # Two images, both of class 0; a gets both right, b only the first. A resample's accuracy
    # difference is (copies of image 2) / 2: 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so
    # P(d <= 0) = 1/4 and the two-sided p is 2 * 1/4 = 0.5; the 95% interval is [0, 1].
    y, a, b = np.array([0, 0]), np.array([0, 0]), np.array([0, 1])
    res = paired_bootstrap(y, a, b, CANONICAL, "accuracy", n_resamples=20000, seed=0)
    assert res["diff"] == 0.5
    assert res["p"] == pytest.approx(0.5, abs=0.02)
    assert res["ci"] == [0.0, 1.0]
    # Identical systems: every difference is 0, p = 1.
    same = paired_bootstrap(y, a, a, CANONICAL, "accuracy", n_resamples=500)
    assert same["p"] == 1.0 and same["ci"] == [0.0, 0.0]
    # a right everywhere, b wrong everywhere: every replicate favours a; p = 2 / (B + 1).
    y50 = np.repeat(np.arange(7), 8)
    dom = paired_bootstrap(y50, y50, (y50 + 1) % 7, CANONICAL, "recall:fear", n_resamples=999)
    assert dom["diff"] == 1.0 and dom["p"] == pytest.approx(2 / 1000)


def test_paired_bootstrap_is_more_sensitive_than_unpaired_intervals():
    """Two systems that differ on a few images: the intervals overlap, the paired test does not
    (sharing the resampled images cancels the image-to-image noise)."""
    rng = np.random.default_rng(11)
    y, a = simulate(rng, 1500)
    b = a.copy()
    flip = np.flatnonzero(a == y)[:45]  # b misses 45 images a gets right (3 points)
    b[flip] = (y[flip] + 1) % 7
    ia, ib = intervals(y, a, CANONICAL, 500), intervals(y, b, CANONICAL, 500)
    assert ia["accuracy"][0] < ib["accuracy"][1]  # unpaired intervals overlap
    res = paired_bootstrap(y, a, b, CANONICAL, "accuracy", 500)
    assert res["diff"] == pytest.approx(45 / 1500)
    assert res["p"] < 0.01 and res["ci"][0] > 0
    assert mcnemar(y, a, b)["p"] < 1e-9


def test_mean_std():
    assert mean_std([0.5]) == (0.5, 0.0)
    m, s = mean_std([0.2, 0.4, None])
    assert m == pytest.approx(0.3) and s == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert mean_std([None]) == (None, None)
