"""Dataset loading, cached tokenization, and length-grouped batching.

Tweets average ~20 tokens; padding them all to 128 wastes most of the compute. We pad each batch
to its own longest text and group texts of similar length into the same batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from emotion_lab.config import DataConfig, TrainerConfig
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


def looks_local(path: str) -> bool:
    return path.startswith(("/", ".", "~")) or Path(path).expanduser().exists()


def load_raw(cfg: DataConfig) -> datasets.DatasetDict:
    """Load the dataset from the hub id or local dir in ``cfg.path``, with clear errors."""
    path = cfg.path
    if looks_local(path):
        local = Path(path).expanduser()
        if not local.exists():
            raise DataError(
                f"data.path={path}: no such file or directory. Point data.path at a dataset "
                "directory (e.g. a local copy of dair-ai/emotion) or a hub id."
            )
        path = str(local.resolve())
    try:
        return datasets.load_dataset(path, cfg.name)
    except ConnectionError as e:
        raise DataError(
            f"data.path={cfg.path}: the Hugging Face Hub is unreachable and this dataset is not "
            "cached. Download it where you have network, or set data.path=<local dataset dir>."
        ) from e
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"data.path={cfg.path} (data.name={cfg.name}): {e}") from e


def _label_names(ds: datasets.DatasetDict, cfg: DataConfig) -> list[str]:
    feature = ds[cfg.train_split].features[cfg.label_column]
    if not isinstance(feature, datasets.ClassLabel):
        raise DataError(
            f"data.label_column={cfg.label_column} is {feature}, not a ClassLabel; "
            "the label names must come from the dataset."
        )
    return list(feature.names)


def _check_splits(ds: datasets.DatasetDict, cfg: DataConfig) -> None:
    for split in (cfg.train_split, cfg.eval_split, cfg.test_split):
        if split not in ds:
            raise DataError(
                f"data.path={cfg.path} has no split {split!r}; it has {sorted(ds)}. "
                "Set data.train_split/eval_split/test_split."
            )
        columns = ds[split].column_names
        for key in ("text_column", "label_column"):
            if getattr(cfg, key) not in columns:
                raise DataError(
                    f"data.{key}={getattr(cfg, key)} is not a column of split {split!r} "
                    f"(columns: {columns})."
                )
        if len(ds[split]) == 0:
            raise DataError(f"split {split!r} of data.path={cfg.path} is empty.")


def _subset(ds: datasets.Dataset, n: int | None) -> datasets.Dataset:
    return ds if n is None or n >= len(ds) else ds.select(range(n))


def _check_labels(ds: datasets.Dataset, split: str, column: str, num_labels: int) -> None:
    labels = ds.with_format("numpy")[:][column]
    bad = (labels < 0) | (labels >= num_labels)
    if bad.any():
        raise DataError(
            f"split {split!r}: {int(bad.sum())} rows have labels outside 0..{num_labels - 1} "
            f"(e.g. {int(labels[bad][0])}) in column {column!r}; fix or drop them."
        )


def _drop_bad_texts(ds: datasets.Dataset, column: str) -> datasets.Dataset:
    """Empty or non-string texts carry no signal: they are dropped and counted, not refused."""
    return ds.filter(
        lambda texts: [isinstance(t, str) and bool(t.strip()) for t in texts],
        batched=True,
        input_columns=column,
        desc="Dropping empty texts",
    )


def tokenize_splits(
    cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> TokenizedSplits:
    """Load, subset and tokenize the three splits; ``datasets`` caches the tokenized result."""
    raw = load_raw(cfg)
    _check_splits(raw, cfg)
    label_names = _label_names(raw, cfg)
    input_names = list(tokenizer.model_input_names)

    def encode(batch: dict) -> dict:
        enc = tokenizer(batch[cfg.text_column], truncation=True, max_length=max_length)
        enc = {k: v for k, v in enc.items() if k in input_names}
        enc["labels"] = batch[cfg.label_column]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    skipped: dict[str, int] = {}

    def encode_split(split: str, limit: int | None) -> datasets.Dataset:
        ds = _subset(raw[split], limit)
        _check_labels(ds, split, cfg.label_column, len(label_names))
        kept = _drop_bad_texts(ds, cfg.text_column)
        skipped[split] = len(ds) - len(kept)
        if skipped[split]:
            log.warning(
                "Skipped %d rows of %r with empty or non-string text.", skipped[split], split
            )
        if len(kept) == 0:
            raise DataError(f"split {split!r} of data.path={cfg.path} has no non-empty texts.")
        ds = kept
        return ds.map(
            encode,
            batched=True,
            remove_columns=ds.column_names,
            desc=f"Tokenizing {split}",
        )

    train = encode_split(cfg.train_split, cfg.max_train_samples)
    validation = encode_split(cfg.eval_split, cfg.max_eval_samples)
    test = encode_split(cfg.test_split, cfg.max_eval_samples)
    train_lengths = list(train["length"])
    return TokenizedSplits(
        train=train.remove_columns("length"),
        # Sorted by length: eval batches carry almost no padding.
        validation=validation.sort("length").remove_columns("length"),
        test=test.sort("length").remove_columns("length"),
        label_names=label_names,
        train_lengths=train_lengths,
        skipped=skipped,
    )


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length texts.

    Each epoch: shuffle, cut into mega-batches of ``batch_size * group_factor``, sort each by
    length, cut into batches, shuffle the batches. ``group_factor=1`` is a plain shuffle.
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
        for i in torch.randperm(len(batches), generator=g).tolist():
            yield batches[i]


def make_loaders(
    splits: TokenizedSplits,
    tokenizer: PreTrainedTokenizerBase,
    trainer: TrainerConfig,
    data: DataConfig,
    seed: int,
    pad_to_multiple_of: int | None = None,
) -> tuple[DataLoader, DataLoader, DataLoader, LengthGroupedBatchSampler]:
    """Length-grouped shuffled training batches; evaluation batches in the splits' order."""
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    group_factor = trainer.length_group_factor if trainer.group_by_length else 1
    sampler = LengthGroupedBatchSampler(
        splits.train_lengths, trainer.batch_size, seed, group_factor
    )
    train = DataLoader(
        splits.train, batch_sampler=sampler, collate_fn=collate, num_workers=data.num_workers
    )

    def evaluation(ds: datasets.Dataset) -> DataLoader:
        return DataLoader(
            ds, batch_size=trainer.eval_batch_size, collate_fn=collate, num_workers=data.num_workers
        )

    return train, evaluation(splits.validation), evaluation(splits.test), sampler
