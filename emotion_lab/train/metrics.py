"""Classification metrics computed over the whole evaluated set (never averaged per batch).

Validation every epoch, and the test split's per-class report, come from the confusion matrix
in numpy (``emotion_lab.confusion``): a job never imports scikit-learn (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emotion_lab.confusion import accuracy, classification_report, confusion, macro_f1


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    macro_f1: float
    n: int
    confusion: np.ndarray  # rows: true class, columns: predicted class
    label_names: list[str]

    def scalars(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_loss": self.loss,
            f"{prefix}_accuracy": self.accuracy,
            f"{prefix}_macro_f1": self.macro_f1,
        }

    def report(self) -> tuple[str, dict]:
        """Per-class precision, recall and F1 as scikit-learn's ``classification_report`` gives
        them: its text, and its dict."""
        return classification_report(self.confusion, self.label_names)


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
        label_names=label_names,
    )
