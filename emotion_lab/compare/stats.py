"""Statistics of a comparison: paired bootstrap intervals of a difference in accuracy and
macro-F1 on the same test examples (hierarchical over seeds when groups have several runs),
McNemar's exact test, and the expected best validation score under a tuning budget.

Pure numpy/scipy. A bootstrap is an index matrix (one row per resample, one column per drawn
example); it is turned into per-resample confusion matrices of every run at once by one matrix
product per block of resamples, so no Python code runs once per resample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from emotion_lab.confusion import accuracy, confusion, macro_f1

# Elements of a (resamples x examples) block held at once: bounds memory to a few tens of MB.
_BLOCK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def draw_examples(rng: np.random.Generator, n_examples: int, resamples: int) -> np.ndarray:
    """Bootstrap of the test examples: ``resamples`` rows of ``n_examples`` indices drawn with
    replacement."""
    return rng.integers(0, n_examples, size=(resamples, n_examples), dtype=np.int32)


def draw_runs(rng: np.random.Generator, n_runs: int, resamples: int) -> np.ndarray:
    """Bootstrap of a group's runs (its seeds): ``resamples`` rows of ``n_runs`` run indices."""
    return rng.integers(0, n_runs, size=(resamples, n_runs), dtype=np.int32)


Metric = Callable[[np.ndarray], np.ndarray]
METRICS: dict[str, Metric] = {"accuracy": accuracy, "macro_f1": macro_f1}


def resampled_confusions(
    true: np.ndarray, preds: np.ndarray, k: int, examples: np.ndarray
) -> np.ndarray:
    """Confusion matrices of every run on every resample: (runs, resamples, k, k).

    ``preds`` is (runs, n) over the same n examples as ``true``. Each block of resamples becomes
    a matrix of draw counts (resamples x n); its product with the one-hot (true, pred) cell of
    every run and example gives all the confusion counts of the block at once.
    """
    runs, n = preds.shape
    cells = true[None, :] * k + preds + (np.arange(runs) * k * k)[:, None]
    onehot = np.zeros((n, runs * k * k))
    onehot[np.arange(n)[None, :], cells] = 1.0
    resamples = examples.shape[0]
    out = np.empty((resamples, runs * k * k))
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, resamples, block):
        idx = examples[start : start + block]
        rows = idx.shape[0]
        flat = idx + (np.arange(rows, dtype=np.int64) * n)[:, None]
        counts = np.bincount(flat.ravel(), minlength=rows * n).reshape(rows, n)
        out[start : start + rows] = counts @ onehot
    return out.reshape(resamples, runs, k, k).transpose(1, 0, 2, 3)


def _group_means(per_run: np.ndarray, runs: np.ndarray | None) -> np.ndarray:
    """Per-resample mean over a group's runs: (runs, resamples) -> (resamples,). With ``runs``
    (resamples x draws), the runs are themselves resampled; otherwise all of them count."""
    if runs is None:
        return per_run.mean(axis=0)
    return np.take_along_axis(per_run.T, runs, axis=1).mean(axis=1)


def paired_difference(  # noqa: PLR0913 - the bootstrap's inputs: predictions and their resample indices
    true: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    k: int,
    examples: np.ndarray,
    runs_a: np.ndarray | None = None,
    runs_b: np.ndarray | None = None,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Metric of group A minus metric of group B, for each of ``METRICS``, with a percentile
    bootstrap interval.

    A group's metric is the mean over its runs (seeds) of each run's metric. Every resample draws
    one set of test examples shared by all runs of both groups (the comparison is paired), and,
    when ``runs_a``/``runs_b`` are given, redraws each group's runs too (a hierarchical
    bootstrap: the interval then covers seed-to-seed variation as well as test-set sampling).
    """
    preds = np.concatenate([preds_a, preds_b])
    n_a = len(preds_a)
    full = np.stack([confusion(true, p, k) for p in preds])
    boot = resampled_confusions(true, preds, k, examples)
    tail = (1 - level) / 2
    out = {}
    for name, metric in METRICS.items():
        point = metric(full)
        estimate = point[:n_a].mean() - point[n_a:].mean()
        per_run = metric(boot)
        diffs = _group_means(per_run[:n_a], runs_a) - _group_means(per_run[n_a:], runs_b)
        low, high = np.quantile(diffs, [tail, 1 - tail])
        out[name] = Interval(float(estimate), float(low), float(high))
    return out


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: under H0 (equal error rates) each of the n discordant
    examples is A-right/B-wrong with probability 1/2."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(only_a, only_b), discordant, 0.5)))


def expected_max(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected best of n runs drawn at random (with replacement) from these N, for n = 1..N,
    and its standard deviation (Dodge et al., 2019, "Show Your Work").

    With v sorted ascending and the empirical CDF, P(max of n = v_(i)) = (i/N)^n - ((i-1)/N)^n,
    so E[max of n] = sum_i v_(i) ((i/N)^n - ((i-1)/N)^n).
    """
    v = np.sort(np.asarray(values, dtype=float))
    size = len(v)
    n = np.arange(1, size + 1)[:, None]
    i = np.arange(1, size + 1)[None, :]
    weights = (i / size) ** n - ((i - 1) / size) ** n
    mean = weights @ v
    variance = np.maximum(weights @ v**2 - mean**2, 0.0)
    return mean, np.sqrt(variance)
