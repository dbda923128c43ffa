"""Accuracy and F1 over all samples, not averaged per batch."""

from __future__ import annotations

import numpy as np
import torch

from emotion_lab.train.metrics import evaluate_logits


def _logits_for(pred: list[int], classes: int) -> torch.Tensor:
    logits = torch.zeros(len(pred), classes)
    logits[torch.arange(len(pred)), torch.tensor(pred)] = 5.0
    return logits


def test_accuracy_counts_samples():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    pred = [0, 1, 2, 1, 1, 0, 0]  # 5 of 7 correct
    result = evaluate_logits(_logits_for(pred, 3), labels, ["a", "b", "c"])
    assert result.n == 7
    assert result.accuracy == 5 / 7


def test_macro_f1_weights_classes_equally():
    labels = torch.tensor([0, 0, 0, 0, 1])
    pred = [0, 0, 0, 0, 0]
    result = evaluate_logits(_logits_for(pred, 2), labels, ["common", "rare"])
    # F1(common) = 2*0.8*1/(1.8) = 0.888..., F1(rare) = 0
    assert np.isclose(result.macro_f1, (2 * 0.8 / 1.8) / 2)
    assert result.confusion.tolist() == [[4, 0], [1, 0]]
    assert "rare" in result.report


def test_absent_class_still_in_confusion_matrix():
    labels = torch.tensor([0, 1])
    result = evaluate_logits(_logits_for([0, 1], 3), labels, ["a", "b", "c"])
    assert result.confusion.shape == (3, 3)
