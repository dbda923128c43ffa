"""Head gates against weight surgery, the pooled position against the model's own, and head
permutations that change nothing."""

from __future__ import annotations

import pytest
import torch

from emotion_lab.attention.gating import gated, output_projections, pooled_positions
from emotion_lab.attention.passes import pad_ids
from tests.attention.models import TEXTS, permute_gpt2_heads, tiny_bert, tiny_gpt2


def _batch(loaded):
    enc = [loaded.tokenizer(t)["input_ids"] for t in TEXTS]
    return pad_ids(enc, loaded.tokenizer.pad_token_id)


@pytest.fixture(params=["gpt2", "bert"])
def loaded(request):
    return tiny_gpt2() if request.param == "gpt2" else tiny_bert()


def test_all_gates_at_one_give_identical_logits(loaded):
    ids, mask = _batch(loaded)
    with torch.inference_mode():
        plain = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
        with gated(loaded.model, torch.ones(*loaded.shape)):
            gated_logits = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
    assert torch.equal(plain, gated_logits)


def _remove_head_from_weights(loaded, layer: int, head: int) -> None:
    """The reference: the head's input slice of the output projection zeroed in the weights."""
    projection = output_projections(loaded.model)[layer]
    _, heads = loaded.shape
    with torch.no_grad():
        if loaded.causal:  # GPT-2's Conv1D: weight [in, out]
            width = projection.weight.shape[0] // heads
            projection.weight[head * width : (head + 1) * width] = 0
        else:  # nn.Linear: weight [out, in]
            width = projection.weight.shape[1] // heads
            projection.weight[:, head * width : (head + 1) * width] = 0


@pytest.mark.parametrize(("layer", "head"), [(0, 1), (1, 3)])
def test_gating_a_head_to_zero_equals_removing_it_from_the_weights(loaded, layer, head):
    ids, mask = _batch(loaded)
    gates = torch.ones(*loaded.shape)
    gates[layer, head] = 0
    with torch.inference_mode():
        before = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
        with gated(loaded.model, gates):
            by_gate = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
        _remove_head_from_weights(loaded, layer, head)
        by_weights = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
    assert not torch.allclose(before, by_gate, atol=1e-4)  # the head did something
    torch.testing.assert_close(by_gate, by_weights, atol=1e-5, rtol=1e-5)


def test_per_text_gates_equal_shared_gates_text_by_text():
    loaded = tiny_gpt2()
    ids, mask = _batch(loaded)
    per_text = torch.ones(len(TEXTS), *loaded.shape)
    per_text[0, 1, 2] = 0
    shared = torch.ones(*loaded.shape)
    shared[1, 2] = 0
    with torch.inference_mode(), gated(loaded.model, per_text):
        mixed = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
    with torch.inference_mode(), gated(loaded.model, shared):
        ablated = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
    with torch.inference_mode():
        plain = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
    torch.testing.assert_close(mixed[0], ablated[0])
    torch.testing.assert_close(mixed[1:], plain[1:])


def test_pooled_position_is_the_one_the_classifier_reads(loaded):
    ids, mask = _batch(loaded)
    model = loaded.model
    positions = pooled_positions(model, ids)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
        hidden = out.hidden_states[-1][torch.arange(len(ids)), positions]
        if loaded.causal:
            assert torch.equal(positions, mask.sum(1) - 1)  # right padding: the last real token
            recomputed = model.score(hidden)
        else:
            assert (positions == 0).all()
            recomputed = model.classifier(model.bert.pooler.dense(hidden).tanh())
    torch.testing.assert_close(recomputed, out.logits)


def test_permuting_a_layers_heads_changes_no_logit():
    loaded = tiny_gpt2()
    ids, mask = _batch(loaded)
    with torch.inference_mode():
        before = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
        permute_gpt2_heads(loaded.model, 1, [2, 0, 3, 1])
        after = loaded.model(input_ids=ids, attention_mask=mask.long()).logits
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-5)


def test_ablation_replaying_the_layers_below_equals_full_gated_passes():
    import numpy as np

    from emotion_lab.attention import passes
    from emotion_lab.attention.importance import ablation

    loaded = tiny_gpt2(layers=3, heads=2)
    seqs = [loaded.tokenizer(t)["input_ids"] for t in TEXTS]
    labels = np.array([0, 1, 2, 0, 1, 2])
    dloss, _, layer_dloss, _, base_loss, _ = ablation(
        loaded.model, seqs, labels, batch_size=4, desc="test"
    )
    plain = passes.logits(loaded.model, seqs, 4)

    def loss(logits):
        z = logits - logits.max(-1, keepdims=True)
        return -(z - np.log(np.exp(z).sum(-1, keepdims=True)))[np.arange(6), labels]

    np.testing.assert_allclose(base_loss, loss(plain), rtol=1e-6)
    for layer in range(3):
        for head in (0, 1, None):
            gates = torch.ones(3, 2)
            gates[layer, slice(None) if head is None else head] = 0
            full = loss(passes.logits(loaded.model, seqs, 4, gates=gates)) - loss(plain)
            got = layer_dloss[:, layer] if head is None else dloss[:, layer, head]
            np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)
    assert np.abs(dloss).max() > 1e-3
