"""The comparison statistics on constructed predictions, against independent computations:
scipy's binomtest, scikit-learn's metrics on plain-loop resamples, enumeration of every draw."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score

from emotion_lab.compare import stats

K = 4


def _predictions(rng: np.random.Generator, true: np.ndarray, accuracy: float) -> np.ndarray:
    """Right with probability ``accuracy``, else a uniformly drawn wrong class."""
    wrong = (true + rng.integers(1, K, size=true.shape)) % K
    return np.where(rng.random(true.shape) < accuracy, true, wrong)


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(7)
    true = rng.integers(0, K, size=300)
    return {
        "true": true,
        "good": np.stack([_predictions(rng, true, a) for a in (0.85, 0.8, 0.9)]),
        "poor": np.stack([_predictions(rng, true, a) for a in (0.55, 0.6)]),
    }


def _loop_difference(true, preds_a, preds_b, examples, runs_a=None, runs_b=None):  # noqa: PLR0913 - paired_difference's inputs
    """The same bootstrap, one resample at a time, with scikit-learn's metrics."""
    labels = list(range(K))
    metrics = {
        "accuracy": accuracy_score,
        "macro_f1": lambda t, p: f1_score(t, p, labels=labels, average="macro", zero_division=0),
    }
    out = {}
    for name, metric in metrics.items():
        diffs = []
        for b, idx in enumerate(examples):
            a_runs = range(len(preds_a)) if runs_a is None else runs_a[b]
            b_runs = range(len(preds_b)) if runs_b is None else runs_b[b]
            mean_a = np.mean([metric(true[idx], preds_a[r][idx]) for r in a_runs])
            mean_b = np.mean([metric(true[idx], preds_b[r][idx]) for r in b_runs])
            diffs.append(mean_a - mean_b)
        out[name] = np.percentile(diffs, [2.5, 97.5])
    return out


def test_vectorised_confusions_equal_counting_each_resample(data: dict):
    rng = np.random.default_rng(0)
    examples = stats.draw_examples(rng, len(data["true"]), 50)
    boot = stats.resampled_confusions(data["true"], data["good"], K, examples)
    assert boot.shape == (3, 50, K, K)
    for r, pred in enumerate(data["good"]):
        for b, idx in enumerate(examples):
            expected = np.zeros((K, K))
            for t, p in zip(data["true"][idx], pred[idx], strict=True):
                expected[t, p] += 1
            np.testing.assert_array_equal(boot[r, b], expected)


def test_paired_interval_equals_a_plain_loop_resample(data: dict):
    rng = np.random.default_rng(1)
    examples = np.stack([rng.choice(len(data["true"]), len(data["true"])) for _ in range(150)])
    one_a, one_b = data["good"][:1], data["poor"][:1]
    got = stats.paired_difference(data["true"], one_a, one_b, K, examples)
    expected = _loop_difference(data["true"], one_a, one_b, examples)
    for name in ("accuracy", "macro_f1"):
        np.testing.assert_allclose([got[name].low, got[name].high], expected[name], atol=1e-12)
    correct_a, correct_b = one_a[0] == data["true"], one_b[0] == data["true"]
    assert got["accuracy"].estimate == pytest.approx(correct_a.mean() - correct_b.mean(), abs=1e-15)


def test_hierarchical_interval_equals_a_plain_loop_resample(data: dict):
    rng = np.random.default_rng(2)
    n = len(data["true"])
    examples = stats.draw_examples(rng, n, 60)
    runs_a = stats.draw_runs(rng, 3, 60)
    runs_b = stats.draw_runs(rng, 2, 60)
    got = stats.paired_difference(
        data["true"], data["good"], data["poor"], K, examples, runs_a, runs_b
    )
    expected = _loop_difference(data["true"], data["good"], data["poor"], examples, runs_a, runs_b)
    for name in ("accuracy", "macro_f1"):
        np.testing.assert_allclose([got[name].low, got[name].high], expected[name], atol=1e-12)
    labels = list(range(K))
    f1 = [f1_score(data["true"], p, labels=labels, average="macro") for p in data["good"]]
    f1_b = [f1_score(data["true"], p, labels=labels, average="macro") for p in data["poor"]]
    assert got["macro_f1"].estimate == pytest.approx(np.mean(f1) - np.mean(f1_b), abs=1e-12)
    # Redrawing seeds adds their variance: the interval is wider than over examples alone.
    examples_only = stats.paired_difference(data["true"], data["good"], data["poor"], K, examples)
    width = got["accuracy"].high - got["accuracy"].low
    assert width > examples_only["accuracy"].high - examples_only["accuracy"].low


def test_a_clearly_better_model_has_an_interval_above_zero_and_a_small_p(data: dict):
    rng = np.random.default_rng(3)
    examples = stats.draw_examples(rng, len(data["true"]), 2000)
    got = stats.paired_difference(data["true"], data["good"][:1], data["poor"][:1], K, examples)
    assert got["accuracy"].low > 0.15 and got["macro_f1"].low > 0.15
    correct_a, correct_b = data["good"][0] == data["true"], data["poor"][0] == data["true"]
    assert stats.mcnemar_exact(correct_a, correct_b) < 1e-6


def test_equally_good_models_with_different_errors_have_an_interval_around_zero():
    true = np.arange(400) % K
    # Both right on 300 examples, A alone right on 50, B alone right on the other 50.
    pred_a, pred_b = true.copy(), true.copy()
    pred_a[300:350] = (true[300:350] + 1) % K
    pred_b[350:] = (true[350:] + 1) % K
    rng = np.random.default_rng(4)
    examples = stats.draw_examples(rng, len(true), 2000)
    got = stats.paired_difference(true, pred_a[None], pred_b[None], K, examples)
    assert got["accuracy"].estimate == 0
    assert got["accuracy"].contains(0) and got["accuracy"].low < -0.01 < 0.01 < got["accuracy"].high
    assert got["macro_f1"].contains(0)
    assert stats.mcnemar_exact(pred_a == true, pred_b == true) == 1.0


@pytest.mark.parametrize(("only_a", "only_b"), [(0, 0), (0, 7), (3, 12), (20, 20), (41, 25)])
def test_mcnemar_equals_scipy_binomtest_on_the_discordant_pairs(only_a: int, only_b: int):
    both, neither = 30, 9
    correct_a = np.array([True] * (both + only_a) + [False] * (only_b + neither))
    correct_b = np.array([True] * both + [False] * only_a + [True] * only_b + [False] * neither)
    expected = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert stats.mcnemar_exact(correct_a, correct_b) == pytest.approx(expected, rel=1e-12)


def test_expected_max_equals_enumerating_every_draw():
    values = np.array([0.61, 0.7, 0.55, 0.7, 0.64])
    mean, std = stats.expected_max(values)
    for n in range(1, len(values) + 1):
        # Every ordered draw of n runs with replacement, each equally likely.
        maxima = [max(draw) for draw in itertools.product(values, repeat=n)]
        assert mean[n - 1] == pytest.approx(np.mean(maxima), abs=1e-12)
        assert std[n - 1] == pytest.approx(np.std(maxima), abs=1e-9)
    assert mean[0] == pytest.approx(values.mean()) and np.all(np.diff(mean) >= 0)
    assert mean[-1] < values.max()
