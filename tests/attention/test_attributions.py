"""Word attributions against independent computations: rollout in NumPy, integrated gradients'
completeness (exact on a model linear in its embeddings), word pieces summed into words."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from emotion_lab.attention import passes
from emotion_lab.attention.attributions import attribute, integrated_gradients, rollout
from emotion_lab.attention.tokens import encode_texts
from emotion_lab.attention.words import worded
from tests.attention.models import TEXTS, tiny_gpt2


def test_rollout_equals_a_direct_numpy_computation():
    rng = np.random.default_rng(0)
    layers, batch, n = 3, 2, 5
    attn = rng.random((layers, batch, n, n))
    attn /= attn.sum(-1, keepdims=True)
    positions = np.array([4, 2])
    got = rollout(torch.from_numpy(attn), torch.from_numpy(positions)).numpy()
    for b in range(batch):
        joint = np.eye(n)
        for layer in range(layers):  # rollout_l = Â_l @ rollout_{l-1}
            a_hat = 0.5 * attn[layer, b] + 0.5 * np.eye(n)
            a_hat /= a_hat.sum(-1, keepdims=True)
            joint = a_hat @ joint
        np.testing.assert_allclose(got[b], joint[positions[b]], rtol=1e-12)


class LinearInEmbeddings(nn.Module):
    """logits = W (sum of the real tokens' embeddings) + c: integrated gradients are exact."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(50, 8)
        self.out = nn.Linear(8, 3)
        self.config = SimpleNamespace(pad_token_id=0, num_labels=3)

    def get_input_embeddings(self) -> nn.Module:
        return self.embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        e = self.embedding(input_ids) * attention_mask[..., None]
        return SimpleNamespace(logits=self.out(e.sum(1)))


def test_integrated_gradients_are_exact_on_a_model_linear_in_its_embeddings():
    model = LinearInEmbeddings()
    ids, mask = passes.pad_ids([[3, 7, 9, 4], [5, 6]], 0)
    target = torch.tensor([2, 0])
    per_token, delta, gxi = integrated_gradients(model, ids, mask, target, steps=1)
    with torch.no_grad():
        expected = model.embedding(ids) @ model.out.weight[target].T  # [b, t, b]
        expected = expected[torch.arange(2), :, torch.arange(2)] * mask
    torch.testing.assert_close(per_token, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(per_token.sum(1), delta, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gxi, expected, rtol=1e-6, atol=1e-6)  # constant gradient


def test_integrated_gradients_complete_within_two_percent_on_a_transformer():
    loaded = tiny_gpt2()
    encoded = encode_texts(loaded.tokenizer, TEXTS, 64)
    texts = [worded(e, loaded.tokenizer.all_special_ids) for e in encoded]
    result = attribute(loaded.model, texts, batch_size=4, ig_steps=64, name="test")
    # midpoint rule, 64 steps: the error is the curvature of the path, small against the change
    assert result.relative_completeness_error < 0.02
    assert np.abs(result.logit_change).min() > 0


def test_scores_are_per_word_and_pieces_sum_into_their_word():
    loaded = tiny_gpt2()
    encoded = encode_texts(loaded.tokenizer, ["i feel résumé today"], 64)
    (text,) = [worded(e, loaded.tokenizer.all_special_ids) for e in encoded]
    assert text.words == ["i", "feel", "résumé", "today"]
    assert [len(t) for t in text.tokens] == [1, 1, 3, 1]  # ré ##sum ##é
    result = attribute(loaded.model, [text], batch_size=4, ig_steps=4, name="test")
    for method, (scores,) in result.scores.items():
        assert scores.shape == (4,), method
    # last-layer attention of the pooled row, mean over heads: words share all of it
    assert np.isclose(result.scores["attention"][0].sum(), 1.0)
    assert np.isclose(result.scores["rollout"][0].sum(), 1.0)
