"""Per-head attention statistics over many texts, and the words that receive attention.

Every statistic averages over query tokens from the second token on: the first query of a
causal model can only attend to itself, which would make every head look like a "self" and
"first-token" head. Padding is excluded on both sides: padded queries are not counted, and
attention that lands on padding keys is dropped (and its largest share reported, which is 0
for a model that masks padding properly).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from emotion_lab.attention.extract import AttentionBatch
from emotion_lab.attention.tokens import EncodedText

# Shares of a query's attention, and the entropy of its distribution (nats).
STATS = ("entropy", "first", "previous", "self", "next")
DESCRIPTIONS = {
    "entropy": "attention entropy (nats)",
    "entropy_norm": "entropy / entropy of uniform attention",
    "first": "share on the first token",
    "previous": "share on the previous token",
    "self": "share on the token itself",
    "next": "share on the next token",
}


@dataclass
class HeadStats:
    # One row per (layer, head): the columns of DESCRIPTIONS.
    table: pd.DataFrame
    # One row per word: count, share of the non-sink attention, lift over uniform attention.
    words: pd.DataFrame
    causal: bool
    num_texts: int
    num_queries: int
    # Mean share on the first token over every layer, head and query: the "attention sink".
    sink_share: float
    # The tokens that sat first, with how often.
    first_tokens: Counter = field(default_factory=Counter)
    # Largest share of a real query's attention that fell on padding (dropped from the stats).
    padding_mass: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.table["layer"].max()) + 1, int(self.table["head"].max()) + 1

    def grid(self, stat: str) -> np.ndarray:
        """[layers, heads] array of one statistic."""
        return self.table.pivot(index="layer", columns="head", values=stat).to_numpy()

    def per_layer(self) -> pd.DataFrame:
        return self.table.drop(columns="head").groupby("layer").mean()

    def top_words(self, n: int, min_count: int) -> pd.DataFrame:
        frequent = self.words[self.words["count"] >= min_count]
        return frequent.sort_values("lift", ascending=False).head(n).reset_index(drop=True)

    def panels(self) -> list[str]:
        """The statistics worth drawing: a causal model never attends to the next token."""
        return [s for s in STATS if not (self.causal and s == "next")]


class HeadStatsAccumulator:
    """Sums over batches, so memory stays one batch of attention whatever the sample size."""

    def __init__(self, layers: int, heads: int, causal: bool) -> None:
        self.layers, self.heads, self.causal = layers, heads, causal
        self.sums = {s: torch.zeros(layers, heads, dtype=torch.float64) for s in DESCRIPTIONS}
        self.queries = 0
        self.texts = 0
        self.padding_mass = 0.0
        self.vocabulary: dict[str, int] = {}
        # Per key token (all batches): word id, attention received, uniform expectation, start.
        self.word_parts: list[tuple[torch.Tensor, ...]] = []
        self.first_tokens: Counter = Counter()

    def _word_index(self, encoded: list[EncodedText], width: int) -> tuple[torch.Tensor, ...]:
        """[batch, tokens] word ids (-1 on padding) and first-piece flags."""
        index = torch.full((len(encoded), width), -1, dtype=torch.long)
        starts = torch.zeros((len(encoded), width), dtype=torch.bool)
        for row, e in enumerate(encoded):
            for col, word in enumerate(e.words):
                index[row, col] = self.vocabulary.setdefault(word, len(self.vocabulary))
            starts[row, : len(e.words)] = torch.tensor(e.word_starts)
        return index, starts

    def update(self, batch: AttentionBatch, encoded: list[EncodedText]) -> None:
        """Add a batch; ``encoded`` are its texts, in the batch's order."""
        attn, mask = batch.attentions, batch.mask
        size, width = mask.shape
        positions = torch.arange(width)
        key_mask = mask[None, :, None, None, :]
        queries = (mask & (positions >= 1)).double()  # [batch, query]
        self.first_tokens.update(e.labels[0] for e in encoded)
        if queries.sum() == 0:
            self.texts += size
            return
        leak = (attn * ~key_mask).sum(-1)  # [layers, batch, heads, query]
        self.padding_mass = max(self.padding_mass, float((leak * queries[None, :, None]).max()))
        attn = attn.double() * key_mask

        if self.causal:
            visible = (positions + 1).double().expand(size, width)
        else:
            visible = mask.sum(1, keepdim=True).double().expand(size, width)
        entropy = -torch.special.xlogy(attn, attn).sum(-1)
        values = {
            "entropy": entropy,
            "entropy_norm": entropy / visible.log().clamp_min(1e-12)[None, :, None],
            "first": attn[..., 0],
            "previous": F.pad(attn.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0)),
            "self": attn.diagonal(dim1=-2, dim2=-1),
            "next": F.pad(attn.diagonal(offset=1, dim1=-2, dim2=-1), (0, 1)),
        }
        for name, value in values.items():
            self.sums[name] += torch.einsum("lbhq,bq->lh", value, queries)
        self.queries += int(queries.sum())
        self.texts += size
        self._update_words(attn, mask, queries, visible, encoded)

    def _update_words(
        self,
        attn: torch.Tensor,
        mask: torch.Tensor,
        queries: torch.Tensor,
        visible: torch.Tensor,
        encoded: list[EncodedText],
    ) -> None:
        """Attention received by each key but the first, renormalised without the sink, and
        what uniform attention over the same visible keys would have given it."""
        num_layers, size, heads, width, _ = attn.shape
        rest = attn[..., 1:] / (1 - attn[..., :1]).clamp_min(1e-6)
        received = torch.einsum("lbhqk,bq->bk", rest, queries) / (num_layers * heads)
        positions = torch.arange(width)
        keys = mask[:, None, 1:].expand(size, width, width - 1)
        if self.causal:
            keys = keys & (positions[None, 1:] <= positions[:, None])
        uniform = queries / (visible - 1).clamp_min(1)
        expected = torch.einsum("bqk,bq->bk", keys.double(), uniform)

        index, starts = self._word_index(encoded, width)
        index, starts = index[:, 1:], starts[:, 1:]
        keep = index >= 0
        self.word_parts.append((index[keep], received[keep], expected[keep], starts[keep]))

    def _word_table(self) -> pd.DataFrame:
        columns = ["word", "count", "share", "lift"]
        if not self.word_parts:
            return pd.DataFrame(columns=columns)
        index, received, expected, starts = (
            torch.cat(p) for p in zip(*self.word_parts, strict=True)
        )
        n = len(self.vocabulary)
        received = torch.bincount(index, received, minlength=n).numpy()
        expected = torch.bincount(index, expected, minlength=n).numpy()
        counts = torch.bincount(index, starts.double(), minlength=n).numpy().round().astype(int)
        words = pd.DataFrame(
            {
                "word": list(self.vocabulary),
                "count": counts,
                "share": received / max(received.sum(), 1e-12),
                "lift": np.divide(
                    received, expected, out=np.zeros_like(received), where=expected > 0
                ),
            }
        )
        words = words[words["count"] > 0].sort_values("lift", ascending=False)
        return words.reset_index(drop=True)[columns]

    def result(self) -> HeadStats:
        count = max(self.queries, 1)
        layer, head = np.meshgrid(range(self.layers), range(self.heads), indexing="ij")
        table = pd.DataFrame({"layer": layer.ravel(), "head": head.ravel()})
        for name, total in self.sums.items():
            table[name] = (total / count).numpy().ravel()
        words = self._word_table()
        return HeadStats(
            table=table,
            words=words,
            causal=self.causal,
            num_texts=self.texts,
            num_queries=self.queries,
            sink_share=float(table["first"].mean()),
            first_tokens=self.first_tokens,
            padding_mass=self.padding_mass,
        )
