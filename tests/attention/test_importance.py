"""Head importance: the gradient against a float64 finite difference, and a model in which one
head decides, which both measures must name (and matching must find in a permuted copy)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from emotion_lab.attention import intervals, matching, passes
from emotion_lab.attention.gating import gated
from emotion_lab.attention.importance import gate_gradients, head_importance
from emotion_lab.attention.tokens import encode_texts
from tests.attention.models import TEXTS, one_head_decides, permute_gpt2_heads, tiny_gpt2


def _seqs(loaded):
    return [loaded.tokenizer(t)["input_ids"] for t in TEXTS]


def test_gate_gradient_equals_a_float64_finite_difference():
    loaded = tiny_gpt2()
    model = loaded.model.double()
    seqs = _seqs(loaded)
    labels = np.array([0, 1, 2, 0, 1, 2])
    grads = gate_gradients(model, seqs, labels, batch_size=4, desc="test")
    eps = 1e-6
    ids, mask = passes.pad_ids(seqs, loaded.tokenizer.pad_token_id)

    def losses(gates: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), gated(model, gates):
            logits = model(input_ids=ids, attention_mask=mask.long()).logits
        return F.cross_entropy(logits, torch.as_tensor(labels), reduction="none")

    for layer, head in [(0, 0), (0, 3), (1, 2)]:
        up, down = (
            torch.ones(*loaded.shape, dtype=torch.float64),
            torch.ones(*loaded.shape, dtype=torch.float64),
        )
        up[layer, head] += eps
        down[layer, head] -= eps
        finite = ((losses(up) - losses(down)) / (2 * eps)).numpy()
        np.testing.assert_allclose(grads[:, layer, head], finite, rtol=1e-6, atol=1e-9)


def _labels_it_predicts(loaded, seqs):
    return passes.logits(loaded.model, seqs, 8).argmax(-1)


def test_ablation_and_gradient_name_the_one_head_that_decides():
    loaded = one_head_decides(layer=1, head=2)
    seqs = _seqs(loaded) * 4
    labels = _labels_it_predicts(loaded, seqs)
    counts = intervals.draw_counts(np.random.default_rng(0), len(seqs), 200)
    result = head_importance(loaded.model, seqs, labels, batch_size=8, counts=counts, name="test")
    t = result.heads.set_index(["layer", "head"])
    assert t["dloss"].idxmax() == (1, 2)
    assert t["gradient"].idxmax() == (1, 2)
    others = t.drop(index=(1, 2))
    np.testing.assert_allclose(others["dloss"], 0, atol=1e-5)
    np.testing.assert_allclose(others["gradient"], 0, atol=1e-6)
    assert t.loc[(1, 2), "dloss_low"] > 0 and list(t.index[t["matters"]]) == [(1, 2)]
    assert result.base_accuracy == 100.0 and result.removable == 7
    # the whole layer 1 is that head; layer 0 does nothing
    layers = result.layers.set_index("layer")
    assert layers.loc[1, "dloss"] == t.loc[(1, 2), "dloss"]
    assert abs(layers.loc[0, "dloss"]) < 1e-5


def test_matching_recovers_a_permutation_of_the_heads():
    original = one_head_decides(layer=1, head=2)
    permuted = one_head_decides(layer=1, head=2)
    perm = [3, 2, 0, 1]  # new head h = old head perm[h]
    permute_gpt2_heads(permuted.model, 1, perm)
    encoded = encode_texts(original.tokenizer, TEXTS, 64)
    a = matching.attention_of(original, encoded, 4)
    b = matching.attention_of(permuted, encoded, 4)
    matched = matching.match_heads(matching.js_distances(a, b))
    assert list(matched[0]) == [0, 1, 2, 3]
    # old head j sits at new position perm.index(j)
    assert list(matched[1]) == [perm.index(j) for j in range(4)]
    # and the head that decides moved with it: the permuted model's importance names it there
    seqs = _seqs(permuted) * 2
    labels = _labels_it_predicts(permuted, seqs)
    counts = intervals.draw_counts(np.random.default_rng(0), len(seqs), 50)
    moved = head_importance(permuted.model, seqs, labels, batch_size=8, counts=counts, name="test")
    best = moved.heads.sort_values("dloss").iloc[-1]
    assert (best.layer, best["head"]) == (1, matched[1][2])


def test_js_distance_equals_scipy():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    a = rng.random((1, 2, 3, 3)).astype(np.float32)
    b = rng.random((1, 2, 3, 3)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    b /= b.sum(-1, keepdims=True)
    got = matching.js_distances([a], [b])
    for i in range(2):
        for j in range(2):
            expected = np.mean([jensenshannon(a[0, i, q], b[0, j, q]) for q in (1, 2)])
            assert abs(got[0, i, j] - expected) < 1e-6


def test_compare_maps_after_matching_show_no_difference_for_a_permuted_copy(tmp_path):
    import pandas as pd

    from emotion_lab.attention.analysis import head_statistics, write_comparison

    original, permuted = tiny_gpt2(seed=1), tiny_gpt2(seed=1)
    permute_gpt2_heads(permuted.model, 0, [1, 0, 3, 2])
    encoded = encode_texts(original.tokenizer, TEXTS, 64)
    a, b = (head_statistics(m, encoded, 4) for m in (original, permuted))
    by_index = tmp_path / "by_index"
    write_comparison(("a", "b"), a, b, by_index, top_words=5, min_count=1)
    diffs = pd.read_csv(by_index / "comparison.csv").filter(like="_diff").abs()
    assert diffs.to_numpy().max() > 0.01  # by index, a permuted copy looks different
    matched = matching.match_heads(
        matching.js_distances(
            matching.attention_of(original, encoded, 4), matching.attention_of(permuted, encoded, 4)
        )
    )
    write_comparison(
        ("a", "b"), a, b, tmp_path / "matched", top_words=5, min_count=1, matched=matched
    )
    table = pd.read_csv(tmp_path / "matched" / "comparison.csv")
    np.testing.assert_allclose(table.filter(like="_diff").to_numpy(), 0, atol=1e-6)
    assert table.head_b.tolist() == [1, 0, 3, 2, 0, 1, 2, 3]
    assert (tmp_path / "matched" / "compare_first.png").stat().st_size > 0
