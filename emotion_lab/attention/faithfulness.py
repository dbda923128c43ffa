"""How faithful each explanation is (DeYoung et al., 2020, ERASER), and how it ranks words
against leave-one-out.

For a text, a method's ranking of its words, and the predicted class j with probability p(x)_j:

- comprehensiveness at k: p(x)_j - p(x without its top-k words)_j (high = the words mattered);
- sufficiency at k: p(x)_j - p(only its top-k words)_j (low = the words suffice);

each as AOPC, the mean over the bins BINS (a share of the text's words, rounded up, so at least
one word per bin, and at most all words but one, so that no text is ever empty). Words are cut
out of the ids (``words.WordedText``), never replaced by padding. The random ranking is scored
over ``seeds`` draws and averaged per text. Kendall's τ-b compares each method's word scores
with leave-one-out's, per text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from emotion_lab.attention import intervals
from emotion_lab.attention.attributions import RANDOM, Attributions
from emotion_lab.attention.words import WordedText

BINS = (0.01, 0.05, 0.10, 0.20, 0.50)
REFERENCE = "leave_one_out"

# Probabilities [len(seqs), classes] of token id sequences.
Predict = Callable[[Sequence[Sequence[int]]], np.ndarray]


def bin_sizes(num_words: int) -> list[int]:
    """Words in each bin: ceil(share x words), clipped to 1 .. words - 1."""
    return [min(max(math.ceil(share * num_words), 1), max(num_words - 1, 1)) for share in BINS]


def ranking(scores: np.ndarray) -> np.ndarray:
    """Word indices, highest score first (ties: earlier word first)."""
    return np.argsort(-scores, kind="stable")


def aopc(
    texts: Sequence[WordedText],
    full: np.ndarray,
    predicted: np.ndarray,
    orders: Sequence[Sequence[np.ndarray]],
    predict: Predict,
) -> tuple[np.ndarray, np.ndarray]:
    """[rankings, texts] comprehensiveness and sufficiency AOPC of every ranking in ``orders``
    (orders[r][i]: ranking r's word order for text i); ``full`` [texts] is p(x)_j. All the
    erased texts go through ``predict`` once, each distinct sequence once."""
    index: dict[tuple[int, ...], int] = {}
    plan = np.zeros((len(orders), len(texts), len(BINS), 2), dtype=np.int64)
    for r, order_of in enumerate(orders):
        for i, (text, order) in enumerate(zip(texts, order_of, strict=True)):
            for b, k in enumerate(bin_sizes(text.num_words)):
                top = order[:k]
                for s, seq in enumerate((text.without(top), text.keeping(top))):
                    plan[r, i, b, s] = index.setdefault(tuple(seq), len(index))
    probs = predict([list(seq) for seq in index])
    chosen = probs[plan, predicted[None, :, None, None]]  # [rankings, texts, bins, 2]
    drop = full[None, :, None, None] - chosen
    aopcs = drop.mean(axis=2)
    return aopcs[..., 0], aopcs[..., 1]


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ-b (ties counted as SciPy counts them); NaN when either side is constant."""
    n = len(x)
    if n < 2:
        return float("nan")
    upper = np.triu_indices(n, 1)
    dx = np.sign(x[:, None] - x[None, :])[upper]
    dy = np.sign(y[:, None] - y[None, :])[upper]
    pairs = len(dx)
    denominator = math.sqrt((pairs - np.sum(dx == 0)) * (pairs - np.sum(dy == 0)))
    return float(np.sum(dx * dy) / denominator) if denominator > 0 else float("nan")


def random_orders(texts: Sequence[WordedText], seeds: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.permutation(t.num_words) for t in texts] for _ in range(seeds)]


def faithfulness(
    attributions: Attributions, predict: Predict, seeds: int, seed: int, counts: np.ndarray
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(one row per method, best first: comprehensiveness, sufficiency and τ vs leave-one-out
    with intervals, and the comprehensiveness gain over random with its interval; per method
    the per-text comprehensiveness, for paired comparisons)."""
    a = attributions
    methods = list(a.scores)
    full = a.probs[np.arange(len(a.texts)), a.predicted]
    orders = [[ranking(s) for s in a.scores[m]] for m in methods]
    orders += random_orders(a.texts, seeds, seed)
    comp, suff = aopc(a.texts, full, a.predicted, orders, predict)
    per_method = {m: (comp[r], suff[r]) for r, m in enumerate(methods)}
    per_method[RANDOM] = (comp[len(methods) :].mean(0), suff[len(methods) :].mean(0))
    rows = []
    for method, (c, s) in per_method.items():
        if method == RANDOM:
            taus = np.array([np.nan])
        else:
            taus = np.array(
                [
                    kendall_tau(x, y)
                    for x, y in zip(a.scores[method], a.scores[REFERENCE], strict=True)
                ]
            )
        row: dict[str, object] = {"method": method}
        for name, values in (
            ("comprehensiveness", c),
            ("sufficiency", s),
            ("tau_vs_loo", taus),
            ("gain_vs_random", c - per_method[RANDOM][0]),
        ):
            if np.isnan(values).all():
                estimate = low = high = np.nan
            else:
                estimate, low, high = intervals.mean_interval(values, counts)
            row.update(
                {name: float(estimate), f"{name}_low": float(low), f"{name}_high": float(high)}
            )
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("comprehensiveness", ascending=False)
    return table.reset_index(drop=True), {m: c for m, (c, _) in per_method.items()}


def most_faithful(table: pd.DataFrame) -> str:
    """The real method with the highest comprehensiveness (the table is sorted by it)."""
    return str(table.loc[table.method != RANDOM, "method"].iloc[0])
