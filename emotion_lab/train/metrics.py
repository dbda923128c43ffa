"""Classification metrics computed over the whole evaluated set (never averaged per batch).

Validation runs every epoch and needs loss, accuracy and macro-F1 only: they come from the
confusion matrix, in numpy. The per-class report is asked for once, at test time, so
scikit-learn is imported then and not held in memory through training (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    macro_f1: float
    n: int
    confusion: np.ndarray  # rows: true class, columns: predicted class
    true: np.ndarray
    pred: np.ndarray
    label_names: list[str]

    def scalars(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_loss": self.loss,
            f"{prefix}_accuracy": self.accuracy,
            f"{prefix}_macro_f1": self.macro_f1,
        }

    def report(self, output_dict: bool = False) -> str | dict:
        """scikit-learn's per-class precision, recall and F1 (text, or a dict)."""
        from sklearn.metrics import classification_report

        return classification_report(
            self.true,
            self.pred,
            labels=list(range(len(self.label_names))),
            target_names=self.label_names,
            digits=4,
            output_dict=output_dict,
            zero_division=0,
        )


def macro_f1(confusion: np.ndarray) -> float:
    """Mean over classes of F1 = 2 TP / (2 TP + FP + FN); 0 for a class never true nor
    predicted (scikit-learn's ``zero_division=0``)."""
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # (TP + FP) + (TP + FN)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1.mean())


def evaluate_logits(
    logits: torch.Tensor, labels: torch.Tensor, label_names: list[str]
) -> EvalResult:
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    pred = logits.argmax(-1).numpy()
    true = labels.numpy()
    k = len(label_names)
    confusion = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    return EvalResult(
        loss=loss,
        accuracy=float((pred == true).mean()),
        macro_f1=macro_f1(confusion),
        n=len(true),
        confusion=confusion,
        true=true,
        pred=pred,
        label_names=label_names,
    )
