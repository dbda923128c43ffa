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


def classification_report(conf: np.ndarray, names: list[str], digits: int = 4) -> tuple[str, dict]:
    """scikit-learn's ``classification_report`` of one confusion matrix (labels = every class,
    ``zero_division=0``), as text and as its dict: the same numbers and layout, without
    importing scikit-learn at the end of every job (docs/benchmarks.md, "What the three cuts
    took off")."""
    tp = np.diagonal(conf).astype(float)
    support, predicted = conf.sum(axis=1), conf.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
    f1 = per_class_f1(conf)
    n = int(support.sum())
    rows = list(zip(names, precision, recall, f1, support, strict=True))
    averages = {
        "macro avg": [float(np.average(v)) for v in (precision, recall, f1)],
        "weighted avg": [float(np.average(v, weights=support)) for v in (precision, recall, f1)],
    }
    # Micro precision, recall and F1 are all the accuracy when every class is a label.
    accuracy = float(tp.sum() / n)
    headers = ["precision", "recall", "f1-score", "support"]
    as_dict: dict = {
        name: dict(zip(headers, map(float, scores), strict=True)) for name, *scores in rows
    }
    as_dict["accuracy"] = accuracy
    for heading, scores in averages.items():
        as_dict[heading] = dict(zip(headers, [*scores, float(n)], strict=True))

    width = max(*(len(name) for name in names), len("weighted avg"), digits)
    row = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    text = ("{:>{width}s} " + " {:>9}" * 4).format("", *headers, width=width) + "\n\n"
    text += "".join(row.format(*r, width=width, digits=digits) for r in rows) + "\n"
    accuracy_row = "{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f} {:>9}\n"
    text += accuracy_row.format("accuracy", "", "", accuracy, n, width=width, digits=digits)
    for heading, scores in averages.items():
        text += row.format(heading, *scores, n, width=width, digits=digits)
    return text, as_dict
