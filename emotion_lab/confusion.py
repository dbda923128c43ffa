"""Classification metrics from confusion matrices, in numpy: one matrix (a validation split)
or a stack of them (every bootstrap resample at once). Training's per-epoch validation and the
comparison's intervals compute them alike; neither needs scikit-learn for them.
"""

from __future__ import annotations

import numpy as np


def confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows = true class, columns = predicted class."""
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def accuracy(conf: np.ndarray) -> np.ndarray:
    """Accuracy of confusion matrices of shape (..., k, k)."""
    return np.trace(conf, axis1=-2, axis2=-1) / conf.sum(axis=(-2, -1))


def per_class_f1(conf: np.ndarray) -> np.ndarray:
    """F1 per class of confusion matrices (..., k, k) -> (..., k); 0 where a class is neither
    present nor predicted (scikit-learn's ``zero_division=0``)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    denominator = conf.sum(axis=-1) + conf.sum(axis=-2)  # 2tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, 0.0)


def macro_f1(conf: np.ndarray) -> np.ndarray:
    """Unweighted mean of the per-class F1 over all k classes, as scikit-learn's
    ``f1_score(average="macro", labels=range(k))``."""
    return per_class_f1(conf).mean(axis=-1)
