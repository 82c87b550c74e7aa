"""Metrics from true and predicted labels. Everything derives from the confusion matrix, so a
result's numbers can always be checked against the matrix it stores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..classes import FEAR_DISGUST


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """confusion[i][j] counts true class i predicted as j."""
    idx = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(confusion: np.ndarray, classes: Sequence[str]) -> dict:
    cm = np.asarray(confusion, dtype=np.float64)
    support, predicted, correct = cm.sum(1), cm.sum(0), np.diag(cm)
    n = cm.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, correct / support, np.nan)
        precision = np.where(predicted > 0, correct / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * np.nan_to_num(recall)
                      / (precision + np.nan_to_num(recall)), 0.0)
    present = support > 0
    per_class = {c: (float(recall[i]) if present[i] else None) for i, c in enumerate(classes)}
    fd = [per_class[c] for c in FEAR_DISGUST if per_class.get(c) is not None]
    return {
        "accuracy": float(correct.sum() / n) if n else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "fear_disgust": float(np.mean(fd)) if fd else None,
        "per_class_accuracy": per_class,
        "classes": list(classes),
        "confusion": cm.astype(np.int64).tolist(),
        "n_test": int(n),
    }


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, len(classes)), classes)
