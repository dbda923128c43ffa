"""ERASER AOPC checked by hand on a toy model, the random ranking's expectation by enumerating
every order of a short text, Kendall's τ against SciPy's."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from emotion_lab.attention import intervals
from emotion_lab.attention.attributions import Attributions
from emotion_lab.attention.faithfulness import (
    BINS,
    aopc,
    bin_sizes,
    faithfulness,
    kendall_tau,
    random_orders,
)
from emotion_lab.attention.words import WordedText

# A bag of words: class 1's logit is the sum of the tokens' weights, class 0's is 0.
WEIGHTS = {1: 0.0, 10: 2.0, 11: -1.0, 12: 0.5, 13: 1.5, 14: 0.0}


def predict(seqs):
    z = np.array([sum(WEIGHTS[t] for t in s) for s in seqs])
    p1 = 1 / (1 + np.exp(-z))
    return np.stack([1 - p1, p1], axis=1)


# "[CLS] a b c d": the special token (id 1) stays; words are ids 10..13.
TEXT = WordedText("a b c d", [1, 10, 11, 12, 13], ["a", "b", "c", "d"], [[1], [2], [3], [4]])


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_bins_hold_at_least_one_word_and_never_all():
    assert bin_sizes(4) == [1, 1, 1, 1, 2]
    assert bin_sizes(30) == [1, 2, 3, 6, 15]
    assert bin_sizes(2) == [1, 1, 1, 1, 1]


def test_aopc_by_hand():
    full = predict([TEXT.input_ids])[0]
    assert full.argmax() == 1
    order = np.array([0, 3, 2, 1])  # a (2.0), d (1.5), c (0.5), b (-1.0)
    comp, suff = aopc([TEXT], np.array([full[1]]), np.array([1]), [[order]], predict)
    p = _sigmoid(3.0)
    # bins of 1, 1, 1, 1 and 2 words: top-1 = {a}, top-2 = {a, d}
    expected_comp = (4 * (p - _sigmoid(1.0)) + (p - _sigmoid(-0.5))) / 5
    expected_suff = (4 * (p - _sigmoid(2.0)) + (p - _sigmoid(3.5))) / 5
    assert comp[0, 0] == pytest.approx(expected_comp, abs=1e-12)
    assert suff[0, 0] == pytest.approx(expected_suff, abs=1e-12)


def _expected_random() -> tuple[float, float]:
    """Every k-subset of the words equally likely: the mean over all of them, per bin."""
    p = predict([TEXT.input_ids])[0, 1]
    comp, suff = [], []
    for k in bin_sizes(TEXT.num_words):
        subsets = list(itertools.combinations(range(4), k))
        comp.append(np.mean([p - predict([TEXT.without(s)])[0, 1] for s in subsets]))
        suff.append(np.mean([p - predict([TEXT.keeping(s)])[0, 1] for s in subsets]))
    return float(np.mean(comp)), float(np.mean(suff))


def test_random_rankings_expectation_by_enumerating_every_order():
    full = np.array([predict([TEXT.input_ids])[0, 1]])
    orders = [[np.array(o)] for o in itertools.permutations(range(4))]
    comp, suff = aopc([TEXT], full, np.array([1]), orders, predict)
    expected_comp, expected_suff = _expected_random()
    assert comp.mean() == pytest.approx(expected_comp, abs=1e-12)
    assert suff.mean() == pytest.approx(expected_suff, abs=1e-12)
    # the random control, averaged over seeds, estimates that expectation
    seeds = 400
    drawn = random_orders([TEXT], seeds, seed=0)
    comp, _ = aopc([TEXT], full, np.array([1]), drawn, predict)
    assert abs(comp.mean() - expected_comp) < 4 * comp.std() / math.sqrt(seeds)


def test_faithfulness_table_ranks_the_true_weights_above_random():
    texts = [TEXT] * 6
    probs = predict([TEXT.input_ids] * 6)
    truth = np.array([2.0, -1.0, 0.5, 1.5])
    scores = {"truth": [truth] * 6, "reversed": [-truth] * 6, "leave_one_out": [truth] * 6}
    a = Attributions(texts, probs, probs.argmax(-1), scores)
    counts = intervals.draw_counts(np.random.default_rng(0), 6, 100)
    table, per_text = faithfulness(a, predict, seeds=5, seed=0, counts=counts)
    order = list(table.method)
    assert order.index("truth") < order.index("random") < order.index("reversed")
    t = table.set_index("method")
    assert t.loc["truth", "tau_vs_loo"] == 1.0 and t.loc["reversed", "tau_vs_loo"] == -1.0
    assert t.loc["truth", "gain_vs_random"] > 0 and np.isnan(t.loc["random", "tau_vs_loo"])
    assert len(per_text["random"]) == 6 and len(BINS) == 5


@pytest.mark.parametrize("seed", range(5))
def test_kendall_tau_equals_scipys(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=9).astype(float)  # ties on purpose
    y = rng.normal(size=9)
    y[:3] = y[0]
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
    assert np.isnan(kendall_tau(np.ones(4), y[:4]))
