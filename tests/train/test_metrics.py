"""Accuracy and F1 over all samples, not averaged per batch."""

from __future__ import annotations

import numpy as np
import pytest
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
    assert "rare" in result.report()[0]


def test_absent_class_still_in_confusion_matrix():
    labels = torch.tensor([0, 1])
    result = evaluate_logits(_logits_for([0, 1], 3), labels, ["a", "b", "c"])
    assert result.confusion.shape == (3, 3)


def test_macro_f1_is_scikit_learns_on_many_labelings():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for classes in (2, 3, 6):
        for n in (1, 5, 40):
            true = rng.integers(0, classes, n)
            pred = rng.integers(0, classes, n)
            logits = torch.nn.functional.one_hot(torch.tensor(pred), classes).float()
            result = evaluate_logits(logits, torch.tensor(true), [str(c) for c in range(classes)])
            expected = f1_score(
                true, pred, labels=list(range(classes)), average="macro", zero_division=0
            )
            assert np.isclose(result.macro_f1, expected, rtol=0, atol=1e-12)
            assert result.report()[1]["macro avg"]["f1-score"] == expected


@pytest.mark.parametrize("names", [["a", "b", "c"], ["sadness", "joy", "a much longer name"]])
def test_the_report_is_scikit_learns_text_and_dict(names):
    """Classes never predicted, or absent from the labels, included (zero_division=0)."""
    from sklearn.metrics import classification_report

    rng = np.random.default_rng(1)
    k = len(names)
    for n in (1, 4, 50, 500):
        true = rng.integers(0, k, n)
        pred = np.where(rng.random(n) < 0.6, true, rng.integers(0, k - 1, n))
        logits = torch.nn.functional.one_hot(torch.tensor(pred), k).float()
        text, as_dict = evaluate_logits(logits, torch.tensor(true), names).report()
        kwargs = {"labels": list(range(k)), "target_names": names, "digits": 4}
        assert text == classification_report(true, pred, zero_division=0, **kwargs)
        expected = classification_report(true, pred, zero_division=0, output_dict=True, **kwargs)
        assert as_dict.keys() == expected.keys()
        for key, value in expected.items():
            assert as_dict[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
