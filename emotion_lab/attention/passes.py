"""Batched forward passes over token sequences of any length: right-padded, batched by length,
under ``torch.inference_mode()``, with a progress bar when asked."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from emotion_lab.attention.gating import gated


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [batch, tokens] ids and the boolean mask of real tokens."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = True
    return ids, mask


def by_length(seqs: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of ``seqs`` in batches of similar length, longest first (little padding)."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _batches(
    seqs: Sequence[Sequence[int]], batch_size: int, desc: str | None
) -> Iterator[list[int]]:
    batches = by_length(seqs, batch_size)
    if desc is None:
        yield from batches
    else:
        yield from tqdm(batches, desc=desc, unit="batch", leave=False)


def logits(
    model: PreTrainedModel,
    seqs: Sequence[Sequence[int]],
    batch_size: int,
    desc: str | None = None,
    gates: torch.Tensor | None = None,
) -> np.ndarray:
    """[len(seqs), classes] float64 logits, in the order of ``seqs``; ``gates`` [layers, heads]
    scales every text's heads alike (``gating.gated``)."""
    pad = model.config.pad_token_id
    out = np.zeros((len(seqs), model.config.num_labels))
    with torch.inference_mode():
        for batch in _batches(seqs, batch_size, desc):
            ids, mask = pad_ids([seqs[i] for i in batch], pad if pad is not None else 0)
            if gates is None:
                result = model(input_ids=ids, attention_mask=mask.long()).logits
            else:
                with gated(model, gates):
                    result = model(input_ids=ids, attention_mask=mask.long()).logits
            out[batch] = result.double().numpy()
    return out


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)
