"""Train, validation and test as a job uses them: read, labels encoded, missing evaluation splits
carved out of train, and the seeded samples that ``data.max_*_samples`` ask for.

Carving and sampling are stratified by label and seeded by ``data.seed``, so every job of a sweep
with the same seed sees the same rows. Both draw their rows with the ``datasets`` function
behind ``Dataset.train_test_split(stratify_by_column=...)``, from the same seeded generator, so
the rows are the ones ``train_test_split`` picks; it is called on a numpy copy of the labels
because ``train_test_split`` itself reads the label column row by row, which took 65 s for a
1,000,000-row split (AMD EPYC Zen 4, 2 cores, 2026-11-26) where this takes under one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from emotion_lab.config import DataConfig
from emotion_lab.data.labels import encode_labels, label_ids
from emotion_lab.data.sources import Origin, read_sources
from emotion_lab.errors import DataError
from emotion_lab.store import names as store_names

log = logging.getLogger(__name__)

# Each row's index in the split it was read from (before carving and sampling), kept through
# tokenization so that per-example predictions point back at the user's data.
ROW_COLUMN = "row"
# The three roles a split plays in a job.
TRAIN, VALIDATION, TEST = "train", "validation", "test"
# A source names its files; a folder of many shards is cut here (MLflow allows 6000).
_PARAM_LENGTH = 1000


@dataclass
class Rows:
    """A split and its class ids (kept beside it: reading them back through an indices mapping
    goes row by row)."""

    ds: datasets.Dataset
    labels: np.ndarray

    def take(self, indices: np.ndarray) -> Rows:
        return Rows(self.ds.select(indices), self.labels[indices])


@dataclass
class LabeledSplits:
    """The job's three splits with one ClassLabel, before tokenization."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset
    label_names: list[str]
    cfg: DataConfig
    # Per role: where its rows came from, and the sample taken of them (when one was).
    sources: dict[str, str]
    samples: dict[str, str]
    # Per role: the split it was read from, as fields; carved roles name train's.
    located: dict[str, Origin] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """What the MLflow run records of its data: exactly which rows it trained and tested on."""
        out: dict[str, Any] = {}
        for role, source in self.sources.items():
            out[store_names.DATA_SOURCE_PARAM.format(split=role)] = source[:_PARAM_LENGTH]
        for role, sample in self.samples.items():
            out[store_names.DATA_SAMPLE_PARAM.format(split=role)] = sample
        return out


def split_off(rows: Rows, n_out: int, seed: int, what: str, names: list[str]) -> tuple[Rows, Rows]:
    """``n_out`` rows drawn per class in proportion, and the rest: the rows that
    ``train_test_split(test_size=n_out, stratify_by_column=..., seed=seed)`` picks."""
    counts = np.bincount(rows.labels, minlength=len(names))
    present = int((counts > 0).sum())
    single = np.flatnonzero(counts == 1)
    if len(single):
        raise DataError(
            f"{what}: label {names[single[0]]!r} has a single row, and a stratified split needs "
            "at least two of each class."
        )
    for n in (n_out, len(rows.labels) - n_out):
        if n < present:
            raise DataError(f"{what}: {n} rows cannot hold one of each of the {present} classes.")
    rng = np.random.default_rng(seed)
    kept, out = next(
        stratified_shuffle_split_generate_indices(
            rows.labels, len(rows.labels) - n_out, n_out, rng=rng
        )
    )
    return rows.take(kept), rows.take(out)


def _carve(  # noqa: PLR0913 - one private step of carve_splits, with that function's values
    train: Rows, role: str, fraction: float, n_source: int, seed: int, names: list[str]
) -> tuple[Rows, Rows, str]:
    key = "data.val_fraction" if role == VALIDATION else "data.test_fraction"
    n = max(1, round(fraction * n_source))
    what = f"carving {role} out of train ({key}={fraction})"
    train, carved = split_off(train, n, seed, what, names)
    return train, carved, f"{n} rows carved from train ({key}={fraction}), stratified, seed {seed}"


def _sample(rows: Rows, n: int | None, key: str, seed: int, names: list[str]) -> tuple[Rows, str]:
    if n is None or n >= len(rows.labels):
        return rows, ""
    total = len(rows.labels)
    what = f"{key}={n}: sampling {n} of {total} rows (null keeps all)"
    sample, _ = split_off(rows, total - n, seed, what, names)
    return sample, f"{n} of {total} rows, stratified, seed {seed}"


def load_splits(cfg: DataConfig, seed: int | None = None) -> LabeledSplits:
    """Read the data, encode its labels, carve what is missing, and take the asked samples,
    seeded by ``data.seed`` (or ``seed``, where a caller fixes it).

    The data seed is apart from the training seed: the jobs of a seed sweep train on, select on
    and test on the same rows, so their test predictions pair up.
    """
    seed = cfg.seed if seed is None else seed
    raw = read_sources(cfg)
    available = sorted(str(split) for split in raw.splits)
    if cfg.train_split not in raw.splits:
        raise DataError(
            f"the data has no split {cfg.train_split!r} to train on; it has {available}. "
            "Set data.train_split, or name the file train.<ext>."
        )
    found = {TRAIN: cfg.train_split, VALIDATION: cfg.eval_split, TEST: cfg.test_split}
    found = {role: split for role, split in found.items() if split in raw.splits}
    for split in found.values():
        _check_columns(raw.splits[split], raw.origins[split], cfg)
    encoded, label_names = encode_labels(
        {split: raw.splits[split] for split in found.values()},
        raw.origins,
        cfg,
        cfg.train_split,
    )
    col = cfg.label_column
    rows = {
        role: Rows(
            encoded[split].add_column(ROW_COLUMN, np.arange(len(encoded[split]))),
            label_ids(encoded[split], col),
        )
        for role, split in found.items()
    }
    sources = {
        role: f"{len(rows[role].labels)} rows of {raw.origins[split]}"
        for role, split in found.items()
    }
    n_source = len(rows[TRAIN].labels)
    for role, fraction in ((TEST, cfg.test_fraction), (VALIDATION, cfg.val_fraction)):
        if role not in rows:
            split = cfg.test_split if role == TEST else cfg.eval_split
            log.info(
                "The data has no split %r (it has %s): carving %s from train.",
                split,
                available,
                role,
            )
            rows[TRAIN], rows[role], sources[role] = _carve(
                rows[TRAIN], role, fraction, n_source, seed, label_names
            )
    if len(rows[TRAIN].labels) < n_source:
        sources[TRAIN] = f"{len(rows[TRAIN].labels)} rows left after carving, of {sources[TRAIN]}"
    samples = {}
    limits = {
        TRAIN: ("data.max_train_samples", cfg.max_train_samples),
        VALIDATION: ("data.max_eval_samples", cfg.max_eval_samples),
        TEST: ("data.max_eval_samples", cfg.max_eval_samples),
    }
    for role, (key, limit) in limits.items():
        rows[role], sample = _sample(rows[role], limit, key, seed, label_names)
        if sample:
            samples[role] = sample
    return LabeledSplits(
        train=rows[TRAIN].ds,
        validation=rows[VALIDATION].ds,
        test=rows[TEST].ds,
        label_names=label_names,
        cfg=cfg,
        sources=sources,
        samples=samples,
        located={role: raw.located[found.get(role, cfg.train_split)] for role in rows},
    )


def _check_columns(ds: datasets.Dataset, where: str, cfg: DataConfig) -> None:
    columns = ds.column_names
    wanted = [("data.text_column", c) for c in cfg.text_columns]
    wanted.append(("data.label_column", cfg.label_column))
    for key, name in wanted:
        if name not in columns:
            raise DataError(f"{key}={name} is not a column of {where} (columns: {columns}).")
