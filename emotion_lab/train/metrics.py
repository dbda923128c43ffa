"""Classification metrics computed over the whole evaluated set (never averaged per batch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, f1_score


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    macro_f1: float
    n: int
    confusion: np.ndarray
    report: str
    report_dict: dict

    def scalars(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_loss": self.loss,
            f"{prefix}_accuracy": self.accuracy,
            f"{prefix}_macro_f1": self.macro_f1,
        }


def evaluate_logits(
    logits: torch.Tensor, labels: torch.Tensor, label_names: list[str]
) -> EvalResult:
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    pred = logits.argmax(-1).numpy()
    true = labels.numpy()
    classes = list(range(len(label_names)))
    return EvalResult(
        loss=loss,
        accuracy=float((pred == true).mean()),
        macro_f1=float(f1_score(true, pred, labels=classes, average="macro", zero_division=0)),
        n=len(true),
        confusion=confusion_matrix(true, pred, labels=classes),
        report=classification_report(
            true, pred, labels=classes, target_names=label_names, digits=4, zero_division=0
        ),
        report_dict=classification_report(
            true,
            pred,
            labels=classes,
            target_names=label_names,
            output_dict=True,
            zero_division=0,
        ),
    )
