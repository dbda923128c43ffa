"""Cached tokenization of the three splits (one text or a sentence pair), and length-grouped
batching.

Tweets average ~20 tokens; padding them all to 128 wastes most of the compute. We pad each batch
to its own longest text and group texts of similar length into the same batch.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from datasets.fingerprint import Hasher
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from emotion_lab.config import DataConfig, TrainerConfig
from emotion_lab.data.splits import ROW_COLUMN, TEST, TRAIN, VALIDATION, LabeledSplits
from emotion_lab.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class TokenizedSplits:
    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset
    label_names: list[str]
    train_lengths: list[int]
    # Rows dropped per split because their text was empty or not a string.
    skipped: dict[str, int]
    # Each validation/test example's row in its raw split and its text, in the order of
    # ``validation``/``test`` (sorted by length): what per-example predictions are keyed by.
    validation_rows: list[int]
    validation_texts: list[str]
    test_rows: list[int]
    test_texts: list[str]


# Columns that ride along through tokenization until the splits are ordered.
# How a sentence pair is shown as one text, wherever it is shown: per-example predictions,
# the attention report, predict's output.
PAIR_JOIN = " ‖ "
_ROW, _TEXT = ROW_COLUMN, "text"


def _by_length(ds: datasets.Dataset) -> tuple[datasets.Dataset, list[int], list[str]]:
    """An eval split ordered by length, equal lengths by their raw row (so its batches carry
    almost no padding, in an order that does not depend on how it was sampled); with each
    example's raw row and text, in that order."""
    table = ds.with_format("numpy", columns=["length", _ROW])[:]
    order = np.lexsort((table[_ROW], table["length"]))
    ds = ds.select(order)
    return ds.remove_columns(["length", _ROW, _TEXT]), list(ds[_ROW]), list(ds[_TEXT])


def _drop_bad_texts(ds: datasets.Dataset, columns: list[str]) -> datasets.Dataset:
    """Empty or non-string texts carry no signal: they are dropped and counted, not refused.
    A pair is dropped when either of its texts is."""

    def usable(*texts: list) -> list[bool]:
        return [
            all(isinstance(t, str) and t.strip() for t in row) for row in zip(*texts, strict=True)
        ]

    return ds.filter(usable, batched=True, input_columns=columns, desc="Dropping empty texts")


def _tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """A fast tokenizer's identity: its serialized pipeline (vocabulary, merges, special tokens,
    pre- and post-processing) less the truncation and padding state that every call resets.

    ``datasets`` would otherwise pickle the whole tokenizer into each split's cache fingerprint
    (most of a tiny job's data time; see docs/benchmarks.md). None for a slow tokenizer:
    ``datasets`` then hashes it itself.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    backend.no_truncation()
    backend.no_padding()
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def tokenize_splits(
    data: LabeledSplits, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> TokenizedSplits:
    """Tokenize the three splits (``datasets`` caches the result); two text columns are one
    pair, joined the way the tokenizer joins pairs."""
    cfg = data.cfg
    columns = cfg.text_columns
    input_names = list(tokenizer.model_input_names)
    digest = _tokenizer_digest(tokenizer)

    def encode(batch: dict) -> dict:
        enc = tokenizer(*(batch[c] for c in columns), truncation=True, max_length=max_length)
        enc = {k: v for k, v in enc.items() if k in input_names}
        enc["labels"] = batch[cfg.label_column]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        # The text shown in per-example predictions; a pair joined by PAIR_JOIN.
        texts = [batch[c] for c in columns]
        enc[_TEXT] = (
            texts[0] if len(texts) == 1 else [PAIR_JOIN.join(t) for t in zip(*texts, strict=True)]
        )
        return enc

    skipped: dict[str, int] = {}

    def encode_split(split: str, ds: datasets.Dataset) -> datasets.Dataset:
        kept = _drop_bad_texts(ds, columns)
        skipped[split] = len(ds) - len(kept)
        if skipped[split]:
            log.warning(
                "Skipped %d rows of %r with empty or non-string text.", skipped[split], split
            )
        if len(kept) == 0:
            raise DataError(
                f"{split} ({data.sources[split]}): no row has a non-empty text in "
                f"data.text_column={cfg.text_column}."
            )
        ds = kept
        # Same rows, tokenizer and settings -> same fingerprint in every process: a sweep's jobs
        # read the tokenized splits from the datasets cache instead of tokenizing again.
        fingerprint = None
        if digest is not None:
            settings = [cfg.text_column, cfg.label_column, max_length, input_names]
            fingerprint = Hasher.hash([ds._fingerprint, digest, encode.__code__, settings])
        return ds.map(
            encode,
            batched=True,
            remove_columns=[c for c in ds.column_names if c != _ROW],
            desc=f"Tokenizing {split}",
            new_fingerprint=fingerprint,
        )

    train = encode_split(TRAIN, data.train)
    validation = encode_split(VALIDATION, data.validation)
    test = encode_split(TEST, data.test)
    train_lengths = train.with_format("numpy", columns=["length"])[:]["length"].tolist()
    validation, validation_rows, validation_texts = _by_length(validation)
    test, test_rows, test_texts = _by_length(test)
    return TokenizedSplits(
        train=train.remove_columns(["length", _ROW, _TEXT]),
        validation=validation,
        test=test,
        label_names=data.label_names,
        train_lengths=train_lengths,
        skipped=skipped,
        validation_rows=validation_rows,
        validation_texts=validation_texts,
        test_rows=test_rows,
        test_texts=test_texts,
    )


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length texts.

    Each epoch: shuffle, cut into mega-batches of ``batch_size * group_factor``, sort each by
    length, cut into batches, shuffle the batches. ``group_factor=1`` is a plain shuffle.

    The batch that holds the epoch's longest text goes first: its activations are the largest
    of the epoch, and in the first step the optimizer's moments are not allocated yet, so a
    one-epoch job peaks lower, and a batch too long for memory fails in the first step, not
    hours in (Hugging Face's Trainer orders its batches the same way).
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, group_factor: int = 50
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_factor = group_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        mega = self.batch_size * self.group_factor
        batches: list[list[int]] = []
        for start in range(0, len(order), mega):
            group = sorted(order[start : start + mega], key=self.lengths.__getitem__, reverse=True)
            batches += [
                group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)
            ]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        if batches:
            # Each batch is cut from a group sorted longest first: its first text is its longest.
            longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b][0]])
            batches[0], batches[longest] = batches[longest], batches[0]
        yield from batches


def make_loaders(  # noqa: PLR0913 - the splits, their tokenizer, and the three config groups that shape batches
    splits: TokenizedSplits,
    tokenizer: PreTrainedTokenizerBase,
    trainer: TrainerConfig,
    data: DataConfig,
    seed: int,
    pad_to_multiple_of: int | None = None,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Length-grouped shuffled training batches; evaluation batches in the splits' order.

    Each loader has its own generator: a DataLoader draws a seed for its workers from its
    generator every time it is iterated, and without one it draws from the global generator
    that dropout uses, so validating or resuming would shift dropout's stream. No worker draws
    anything at random here, so that seed does not change the batches.
    """
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    group_factor = trainer.length_group_factor if trainer.group_by_length else 1
    sampler = LengthGroupedBatchSampler(
        splits.train_lengths, trainer.batch_size, seed, group_factor
    )

    def loader(ds: datasets.Dataset, **batching: Any) -> DataLoader:
        return DataLoader(
            ds,
            collate_fn=collate,
            num_workers=data.num_workers,
            generator=torch.Generator().manual_seed(seed),
            **batching,
        )

    return (
        loader(splits.train, batch_sampler=sampler),
        loader(splits.validation, batch_size=trainer.eval_batch_size),
        loader(splits.test, batch_size=trainer.eval_batch_size),
    )
