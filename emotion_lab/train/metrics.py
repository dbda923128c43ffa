"""Classification metrics computed over the whole evaluated set (never averaged per batch).

Validation runs every epoch and needs loss, accuracy and macro-F1 only: they come from the
confusion matrix, in numpy (``emotion_lab.confusion``). The per-class report is asked for once,
at test time, so scikit-learn is imported then and not held in memory through training
(docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emotion_lab.confusion import accuracy, confusion, macro_f1


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


def evaluate_logits(
    logits: torch.Tensor, labels: torch.Tensor, label_names: list[str]
) -> EvalResult:
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    pred = logits.argmax(-1).numpy()
    true = labels.numpy()
    matrix = confusion(true, pred, len(label_names))
    return EvalResult(
        loss=loss,
        accuracy=float(accuracy(matrix)),
        macro_f1=float(macro_f1(matrix)),
        n=len(true),
        confusion=matrix,
        true=true,
        pred=pred,
        label_names=label_names,
    )
