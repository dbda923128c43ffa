"""Which head of one model corresponds to which head of another.

Heads are interchangeable: permuting a layer's heads, with their slices of the projections,
changes no output, so head L2H3 of two models have nothing in common by index. Within each
layer, heads are matched one to one by the Hungarian algorithm on the Jensen-Shannon distance
of their attention over the same texts (mean over every query from the second token on, whose
attention rows are distributions over the same keys in both models).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from emotion_lab.attention.extract import LoadedModel, attention_batches
from emotion_lab.attention.tokens import EncodedText


def attention_of(
    loaded: LoadedModel, encoded: list[EncodedText], batch_size: int
) -> list[np.ndarray]:
    """Per text, in order: [layers, heads, query, key] attention over its real tokens (float32)."""
    if not encoded:
        return []
    out: list[np.ndarray | None] = [None] * len(encoded)
    for batch in attention_batches(loaded, encoded, batch_size):
        for row, i in enumerate(batch.indices):
            n = len(encoded[i].input_ids)
            out[i] = batch.attentions[:, row, :, :n, :n].numpy()
    return out  # type: ignore[return-value]


def js_distances(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """[layers, heads of a, heads of b]: mean Jensen-Shannon distance (natural log, the square
    root of the divergence, as ``scipy.spatial.distance.jensenshannon``) between the attention
    rows of every pair of heads of the same layer, over queries from the second token on."""
    total, rows = None, 0
    for pa, pb in tqdm(list(zip(a, b, strict=True)), desc="matching heads", leave=False):
        if pa.shape[-1] < 2:
            continue
        p = torch.from_numpy(pa[..., 1:, :]).double()[:, :, None]  # [l, ha, 1, q, k]
        q = torch.from_numpy(pb[..., 1:, :]).double()[:, None]  # [l, 1, hb, q, k]
        m = (p + q) / 2
        divergence = 0.5 * (torch.special.xlogy(p, p) - torch.special.xlogy(p, m)).sum(-1)
        divergence += 0.5 * (torch.special.xlogy(q, q) - torch.special.xlogy(q, m)).sum(-1)
        distance = divergence.clamp_min(0).sqrt().sum(-1)  # [l, ha, hb]
        total = distance if total is None else total + distance
        rows += p.shape[3]
    if total is None:
        raise ValueError("no text has two tokens: nothing to match heads on")
    return (total / rows).numpy()


def match_heads(distances: np.ndarray) -> np.ndarray:
    """[layers, heads]: for each head h of the first model, its counterpart in the second
    (the assignment of least total distance, per layer)."""
    return np.stack([linear_sum_assignment(layer)[1] for layer in distances])
