import numpy as np

from fer_bench.classes import CANONICAL
from fer_bench.results.metrics import compute_metrics


def test_metrics_agree_with_confusion():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 7, 500))
    m = compute_metrics(y, p, CANONICAL)
    cm = np.array(m["confusion"])
    assert cm.sum() == m["n_test"] == 500
    assert cm[2, 5] == np.sum((y == 2) & (p == 5))  # true fear predicted surprise
    assert m["accuracy"] == np.mean(y == p)
    recalls = [np.mean(p[y == k] == k) for k in range(7)]
    assert np.allclose([m["per_class_accuracy"][c] for c in CANONICAL], recalls)
    assert np.isclose(m["balanced_accuracy"], np.mean(recalls))
    assert np.isclose(m["fear_disgust"], (recalls[1] + recalls[2]) / 2)
    f1 = []
    for k in range(7):
        tp = cm[k, k]
        prec, rec = tp / cm[:, k].sum(), tp / cm[k].sum()
        f1.append(2 * prec * rec / (prec + rec))
    assert np.isclose(m["macro_f1"], np.mean(f1))


def test_absent_class_is_none_not_zero():
    y = np.array([0, 0, 3, 3])
    m = compute_metrics(y, y, CANONICAL)
    assert m["per_class_accuracy"]["disgust"] is None
    assert m["fear_disgust"] is None
    assert m["balanced_accuracy"] == 1.0
