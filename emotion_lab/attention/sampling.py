"""The texts the causal analysis runs on: a stratified, seeded sample of one split with the gold
labels, equal per class where the split allows (a class with too few texts gives all it has and
the others fill the rest). Texts of a single word are left out: removing a word must leave a
text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion_lab.config import DataConfig


@dataclass
class LabelledSample:
    texts: list[str] | list[tuple[str, str]]
    # Class index of each text, in ``label_names``.
    labels: np.ndarray
    label_names: list[str]


def stratified(labels: np.ndarray, eligible: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Row indices: ``size`` in all, as equal per class as the counts allow, seeded."""
    rng = np.random.default_rng(seed)
    pools = {
        c: rng.permutation(np.flatnonzero((labels == c) & eligible)) for c in np.unique(labels)
    }
    take = dict.fromkeys(pools, 0)
    left = min(size, sum(len(p) for p in pools.values()))
    while left > 0:
        open_ = [c for c in pools if take[c] < len(pools[c])]
        share = max(left // len(open_), 1)
        for c in open_:
            extra = min(share, len(pools[c]) - take[c], left)
            take[c] += extra
            left -= extra
            if left == 0:
                break
    return np.sort(np.concatenate([pools[c][: take[c]] for c in pools]))


def causal_sample(data: DataConfig, split: str | None, size: int, seed: int) -> LabelledSample:
    from emotion_lab.data import load_splits
    from emotion_lab.data.labels import label_ids

    splits = load_splits(data)
    split = split or data.eval_split
    roles = {data.train_split: "train", data.eval_split: "validation", data.test_split: "test"}
    ds = getattr(splits, roles.get(split, "validation"))
    labels = label_ids(ds, data.label_column)
    columns = [list(ds[c]) for c in data.text_columns]
    words = np.array([sum(len(str(col[i]).split()) for col in columns) for i in range(len(ds))])
    rows = stratified(labels, words >= 2, size, seed)
    texts = (
        [columns[0][i] for i in rows]
        if len(columns) == 1
        else [tuple(col[i] for col in columns) for i in rows]
    )
    return LabelledSample(texts, labels[rows], list(splits.label_names))  # type: ignore[arg-type]
