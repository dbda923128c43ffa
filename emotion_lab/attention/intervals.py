"""95% percentile bootstrap intervals over texts, for every number of the causal analysis.

A resample is a row of draw counts over the texts, so the means of every resample, for every
column of a [texts, ...] array at once, are one matrix product.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEVEL = 0.95


def draw_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """[resamples, n]: how often each of n texts is drawn in each resample (with replacement)."""
    draws = rng.integers(0, n, size=(resamples, n))
    flat = draws + (np.arange(resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n).reshape(resamples, n)


def resampled_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[resamples, ...] means of ``values`` ([texts, ...]) under each resample; NaN entries
    (a text where a number is undefined) are left out of that mean."""
    flat = values.reshape(values.shape[0], -1)
    valid = ~np.isnan(flat)
    sums = counts @ np.where(valid, flat, 0.0)
    numbers = counts @ valid.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / numbers
    return means.reshape(counts.shape[0], *values.shape[1:])


def percentiles(resampled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - LEVEL) / 2 * 100
    return np.nanpercentile(resampled, tail, axis=0), np.nanpercentile(
        resampled, 100 - tail, axis=0
    )


def mean_interval(
    values: np.ndarray, counts: np.ndarray, then: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high) of the mean over texts of ``values``, optionally transformed by
    ``then`` (applied to the mean and to every resample's mean alike)."""
    with np.errstate(invalid="ignore"):
        estimate = np.nanmean(values, axis=0)
    resampled = resampled_means(values, counts)
    if then is not None:
        estimate, resampled = then(estimate), then(resampled)
    low, high = percentiles(resampled)
    return estimate, low, high
