"""Word attributions of one decision: which words of a text made the model predict its class.

Every method gives one score per word (word pieces summed into their word) for the class the
model predicts on the whole text:

- ``attention``: last-layer attention from the pooled position, mean over heads;
- ``rollout``: attention rollout from the pooled position (Abnar & Zuidema, 2020): each layer's
  head-mean attention with the residual added as 0.5 A + 0.5 I, multiplied through the layers;
- ``grad_x_input``: the embedding layer's output times the gradient of the predicted logit;
- ``integrated_gradients``: the same gradient averaged along the straight path from a zero
  embedding to the text's (Sundararajan et al., 2017; midpoint rule). The ids are still fed and
  a hook scales the embedding layer's output by α: with ``inputs_embeds`` GPT-2's classifier
  pools index -1, a pad position in a right-padded batch. Completeness (scores sum to the
  logit's change from the zero embedding) is checked on every text and its error reported;
- ``leave_one_out``: the drop in the predicted class's probability when the word is removed.

The random control is drawn where it is scored (``faithfulness``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from emotion_lab.attention import passes
from emotion_lab.attention.gating import pooled_positions
from emotion_lab.attention.words import WordedText

METHODS = ("attention", "rollout", "grad_x_input", "integrated_gradients", "leave_one_out")
RANDOM = "random"
TITLES = {
    "attention": "last-layer attention",
    "rollout": "attention rollout",
    "grad_x_input": "gradient x input",
    "integrated_gradients": "integrated gradients",
    "leave_one_out": "leave-one-out",
    RANDOM: "random ranking",
}


@dataclass
class Attributions:
    texts: list[WordedText]
    # [texts, classes] probabilities on the whole text, and the predicted class.
    probs: np.ndarray
    predicted: np.ndarray
    # Method -> one [words] array per text.
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)
    # Per text: |sum of integrated gradients - (logit(x) - logit(zero embedding))|, and that
    # logit change (the error is read relative to it).
    completeness_error: np.ndarray = field(default_factory=lambda: np.zeros(0))
    logit_change: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # [texts, layers, heads] entropy (nats) and first-token share of the pooled position's
    # attention row: the classifier's view of each head.
    pooled_entropy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pooled_first: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def relative_completeness_error(self) -> float:
        return float(self.completeness_error.mean() / max(np.abs(self.logit_change).mean(), 1e-12))


@contextmanager
def scaled_embeddings(model: PreTrainedModel, alpha: torch.Tensor) -> Iterator[dict]:
    """Multiply the embedding layer's output by ``alpha`` ([batch] or a scalar); yields a dict
    that receives the unscaled output (``"embeddings"``) and the scaled one (``"scaled"``)."""
    seen: dict = {}

    def hook(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        a = alpha.to(output.dtype)
        scaled = output * (a[:, None, None] if a.dim() == 1 else a)
        seen["embeddings"], seen["scaled"] = output, scaled
        return scaled

    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _pad(model: PreTrainedModel, texts: Sequence[WordedText]) -> tuple[torch.Tensor, torch.Tensor]:
    pad = model.config.pad_token_id
    return passes.pad_ids([t.input_ids for t in texts], pad if pad is not None else 0)


def embedding_gradients(
    model: PreTrainedModel,
    ids: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embedding output e [b, t, d], ∂logit_target/∂(αe) at α, the target logits [b])."""
    dtype = next(model.parameters()).dtype
    with torch.enable_grad(), scaled_embeddings(model, torch.tensor(alpha, dtype=dtype)) as seen:
        result = model(input_ids=ids, attention_mask=mask.long()).logits
        chosen = result[torch.arange(len(target)), target]
        (grad,) = torch.autograd.grad(chosen.sum(), seen["scaled"])
    return seen["embeddings"].detach(), grad, chosen.detach()


def integrated_gradients(
    model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[b, t] per-token integrated gradients of the target logit from a zero embedding,
    [b] logit(x) - logit(zero embedding), and [b, t] gradient x input (the path's end)."""
    total = None
    for k in range(steps):
        embeddings, grad, _ = embedding_gradients(model, ids, mask, target, (k + 0.5) / steps)
        total = grad if total is None else total + grad
    assert total is not None
    embeddings, at_one, logit = embedding_gradients(model, ids, mask, target, 1.0)
    dtype = next(model.parameters()).dtype
    with torch.inference_mode(), scaled_embeddings(model, torch.tensor(0.0, dtype=dtype)):
        zero = model(input_ids=ids, attention_mask=mask.long()).logits
    per_token = (embeddings * total / steps).sum(-1) * mask
    gxi = (embeddings * at_one).sum(-1) * mask
    return per_token, logit - zero[torch.arange(len(target)), target], gxi


def rollout(attentions: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[batch, keys] rollout from ``positions`` of head-mean attention [layers, batch, q, k]."""
    eye = torch.eye(attentions.shape[-1], dtype=attentions.dtype)
    mixed = 0.5 * attentions + 0.5 * eye
    mixed = mixed / mixed.sum(-1, keepdim=True)
    row = eye[positions]  # [batch, keys]
    for layer in reversed(range(attentions.shape[0])):
        row = torch.einsum("bq,bqk->bk", row, mixed[layer])
    return row


def attribute(
    model: PreTrainedModel,
    texts: list[WordedText],
    batch_size: int,
    ig_steps: int,
    name: str,
) -> Attributions:
    """Every method's word scores on every text (``METHODS``), batched by length."""
    n = len(texts)
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    token_scores: dict[str, list[np.ndarray | None]] = {m: [None] * n for m in METHODS[:-1]}
    probs = np.zeros((n, model.config.num_labels))
    error, change = np.zeros(n), np.zeros(n)
    pooled_entropy, pooled_first = np.zeros((n, layers, heads)), np.zeros((n, layers, heads))
    batches = passes.by_length([t.input_ids for t in texts], batch_size)
    for batch in tqdm(batches, desc=f"attributions {name}", unit="batch"):
        ids, mask = _pad(model, [texts[i] for i in batch])
        positions = pooled_positions(model, ids)
        rows = torch.arange(len(batch))
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
        attentions = torch.stack(out.attentions).double()  # [layers, b, heads, q, k]
        probs[batch] = torch.softmax(out.logits.double(), -1).numpy()
        target = out.logits.argmax(-1)
        # advanced indices apart: their dimension comes first, [b, layers, heads, k]
        pooled = attentions[:, rows, :, positions]
        pooled_entropy[batch] = (-torch.special.xlogy(pooled, pooled).sum(-1)).numpy()
        pooled_first[batch] = pooled[..., 0].numpy()
        last = pooled[:, -1].mean(1)
        rolled = rollout(attentions.mean(2), positions)
        ig, delta, gxi = integrated_gradients(model, ids, mask, target, ig_steps)
        for row, i in enumerate(batch):
            width = len(texts[i].input_ids)
            for method, values in (
                ("attention", last),
                ("rollout", rolled),
                ("grad_x_input", gxi),
                ("integrated_gradients", ig),
            ):
                token_scores[method][i] = values[row, :width].double().numpy()
            error[i] = abs(float(ig[row].sum() - delta[row]))
            change[i] = float(delta[row])
    predicted = probs.argmax(-1)
    scores = {
        method: [t.word_scores(s) for t, s in zip(texts, values, strict=True)]  # type: ignore[arg-type]
        for method, values in token_scores.items()
    }
    scores["leave_one_out"] = leave_one_out(model, texts, probs, batch_size, name)
    return Attributions(
        texts, probs, predicted, scores, error, change, pooled_entropy, pooled_first
    )


def leave_one_out(
    model: PreTrainedModel, texts: list[WordedText], probs: np.ndarray, batch_size: int, name: str
) -> list[np.ndarray]:
    """Per text, per word: p(predicted | text) - p(predicted | text without the word)."""
    predicted = probs.argmax(-1)
    seqs = [t.without([w]) for t in texts for w in range(t.num_words)]
    removed = passes.softmax(passes.logits(model, seqs, batch_size, f"leave-one-out {name}"))
    out, start = [], 0
    for i, t in enumerate(texts):
        p = removed[start : start + t.num_words, predicted[i]]
        out.append(probs[i, predicted[i]] - p)
        start += t.num_words
    return out
