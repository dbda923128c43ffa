"""Which heads and layers matter to the decision, measured two ways on the same texts.

- Ablation: each head's gate set to 0 (and each whole layer's attention), every text re-run;
  per text, the change in loss and in correctness (in points of accuracy).
- Gradient: Michel et al. (2019), I_h = E_x |∂L/∂ξ_h| at ξ = 1, normalised per layer (divided by
  the layer's L2 norm). Each text gets its own gates, so one backward pass per batch gives every
  text's own gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from emotion_lab.attention import intervals, passes
from emotion_lab.attention.gating import gated, recorded, replayed

# Percentage points per unit of accuracy.
POINTS = 100.0
# A head whose removal costs less than this many points of accuracy can go.
REMOVABLE_POINTS = 1.0


@dataclass
class Importance:
    # One row per head: layer, head, dloss(+_low/_high), dacc(+_low/_high) in points,
    # gradient(+_low/_high), matters (the dloss interval excludes 0).
    heads: pd.DataFrame
    # One row per layer, its whole attention ablated: layer, dloss..., dacc...
    layers: pd.DataFrame
    base_loss: float
    base_accuracy: float
    # Spearman rank agreement of ablation Δloss and gradient importance, with its interval.
    spearman: tuple[float, float, float]

    @property
    def removable(self) -> int:
        """Heads whose removal alone costs under REMOVABLE_POINTS points (point estimate)."""
        return int((self.heads["dacc"] > -REMOVABLE_POINTS).sum())


def _per_text(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-text cross-entropy and correctness (0/1)."""
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels]
    return loss, (logits.argmax(-1) == labels).astype(float)


def _shape(model: PreTrainedModel) -> tuple[int, int]:
    return model.config.num_hidden_layers, model.config.num_attention_heads


def ablation(
    model: PreTrainedModel,
    seqs: Sequence[Sequence[int]],
    labels: np.ndarray,
    batch_size: int,
    desc: str,
) -> tuple[np.ndarray, ...]:
    """Per text: Δloss [texts, layers, heads], Δcorrect [same], Δloss of each whole layer
    [texts, layers], Δcorrect [same], each against the unablated model; then that model's
    loss and correctness [texts]. Layers below the ablated one replay the unablated pass."""
    layers, heads = _shape(model)
    n = len(seqs)
    dloss, dcorrect = np.zeros((n, layers, heads)), np.zeros((n, layers, heads))
    layer_dloss, layer_dcorrect = np.zeros((n, layers)), np.zeros((n, layers))
    base_loss, base_correct = np.zeros(n), np.zeros(n)
    jobs = [(layer, head) for layer in range(layers) for head in [*range(heads), None]]
    batches = passes.by_length(seqs, batch_size)
    pad = model.config.pad_token_id
    with (
        torch.inference_mode(),
        tqdm(total=len(batches) * len(jobs), desc=desc, unit="pass") as bar,
    ):
        for batch in batches:
            ids, mask = passes.pad_ids([seqs[i] for i in batch], pad if pad is not None else 0)
            with recorded(model) as outputs:
                result = model(input_ids=ids, attention_mask=mask.long()).logits
            loss0, correct0 = _per_text(result.double().numpy(), labels[batch])
            base_loss[batch], base_correct[batch] = loss0, correct0
            for layer, head in jobs:
                gates = torch.ones(layers, heads)
                gates[layer, slice(None) if head is None else head] = 0
                with gated(model, gates), replayed(model, outputs, layer):
                    result = model(input_ids=ids, attention_mask=mask.long()).logits
                loss, correct = _per_text(result.double().numpy(), labels[batch])
                if head is None:
                    layer_dloss[batch, layer] = loss - loss0
                    layer_dcorrect[batch, layer] = correct - correct0
                else:
                    dloss[batch, layer, head] = loss - loss0
                    dcorrect[batch, layer, head] = correct - correct0
                bar.update()
    return dloss, dcorrect, layer_dloss, layer_dcorrect, base_loss, base_correct


def gate_gradients(
    model: PreTrainedModel,
    seqs: Sequence[Sequence[int]],
    labels: np.ndarray,
    batch_size: int,
    desc: str,
) -> np.ndarray:
    """[texts, layers, heads] ∂L_x/∂ξ_h at ξ = 1, each text's own loss and gates."""
    shape = _shape(model)
    pad = model.config.pad_token_id
    out = np.zeros((len(seqs), *shape))
    dtype = next(model.parameters()).dtype
    for batch in tqdm(passes.by_length(seqs, batch_size), desc=desc, unit="batch", leave=False):
        ids, mask = passes.pad_ids([seqs[i] for i in batch], pad if pad is not None else 0)
        gates = torch.ones(len(batch), *shape, dtype=dtype, requires_grad=True)
        with torch.enable_grad(), gated(model, gates):
            result = model(input_ids=ids, attention_mask=mask.long()).logits
            loss = F.cross_entropy(result, torch.as_tensor(labels[batch]), reduction="sum")
            (grad,) = torch.autograd.grad(loss, gates)
        out[batch] = grad.double().numpy()
    return out


def _normalise_per_layer(importance: np.ndarray) -> np.ndarray:
    """[..., layers, heads] divided by each layer's L2 norm over its heads."""
    norm = np.linalg.norm(importance, axis=-1, keepdims=True)
    return np.divide(importance, norm, out=np.zeros_like(importance), where=norm > 0)


def _columns(frame: pd.DataFrame, name: str, triple: tuple[np.ndarray, ...]) -> None:
    for suffix, values in zip(("", "_low", "_high"), triple, strict=True):
        frame[name + suffix] = np.ravel(values)


def head_importance(  # noqa: PLR0913 - the texts and labels, then the pass options, by keyword
    model: PreTrainedModel,
    seqs: Sequence[Sequence[int]],
    labels: np.ndarray,
    *,
    batch_size: int,
    counts: np.ndarray,
    name: str,
) -> Importance:
    """Ablation and gradient importance of every head and layer, with intervals over texts
    (``counts``: the bootstrap's draw counts, ``intervals.draw_counts``)."""
    shape = layers, heads = _shape(model)
    dloss, dcorrect, layer_dloss, layer_dcorrect, base_loss, base_correct = ablation(
        model, seqs, labels, batch_size, f"ablation {name}"
    )
    grads = np.abs(gate_gradients(model, seqs, labels, batch_size, f"gradients {name}"))

    layer, head = np.meshgrid(range(layers), range(heads), indexing="ij")
    table = pd.DataFrame({"layer": layer.ravel(), "head": head.ravel()})
    _columns(table, "dloss", intervals.mean_interval(dloss, counts))
    _columns(table, "dacc", intervals.mean_interval(dcorrect * POINTS, counts))
    _columns(table, "gradient", intervals.mean_interval(grads, counts, _normalise_per_layer))
    table["matters"] = (table["dloss_low"] > 0) | (table["dloss_high"] < 0)

    per_layer = pd.DataFrame({"layer": range(layers)})
    _columns(per_layer, "dloss", intervals.mean_interval(layer_dloss, counts))
    _columns(per_layer, "dacc", intervals.mean_interval(layer_dcorrect * POINTS, counts))

    flat_loss = intervals.resampled_means(dloss, counts).reshape(counts.shape[0], -1)
    flat_grad = intervals.resampled_means(grads, counts).reshape(counts.shape[0], -1)
    resampled = np.array(
        [
            _spearman(a, _normalise_per_layer(g.reshape(shape)).ravel())
            for a, g in zip(flat_loss, flat_grad, strict=True)
        ]
    )
    low, high = intervals.percentiles(resampled)
    estimate = _spearman(table["dloss"].to_numpy(), table["gradient"].to_numpy())
    return Importance(
        heads=table,
        layers=per_layer,
        base_loss=float(base_loss.mean()),
        base_accuracy=float(base_correct.mean() * POINTS),
        spearman=(estimate, float(low), float(high)),
    )


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
