"""Real emotion data from ../shared: label names, dynamic padding, length grouping."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from emotion_lab.config import DataConfig, ModelConfig, TrainerConfig
from emotion_lab.data import (
    LengthGroupedBatchSampler,
    load_raw,
    load_splits,
    make_loaders,
    tokenize_splits,
)
from emotion_lab.errors import DataError
from emotion_lab.modeling import load_tokenizer
from tests.conftest import EMOTION, run_process


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig().tokenizer_name)


@pytest.fixture(scope="module")
def splits(tokenizer):
    cfg = DataConfig(path=str(EMOTION), max_train_samples=512, max_eval_samples=200)
    return tokenize_splits(load_splits(cfg, seed=0), tokenizer, max_length=128)


def test_full_dataset_matches_the_hub_layout():
    ds = load_raw(DataConfig(path=str(EMOTION)))
    assert {k: len(v) for k, v in ds.items()} == {"train": 16000, "validation": 2000, "test": 2000}


def test_label_names_come_from_the_classlabel(splits):
    assert splits.label_names == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert len(splits.train) == 512 and len(splits.validation) == 200 and len(splits.test) == 200


def test_eval_splits_are_ordered_by_length_and_keep_their_raw_rows_and_texts(splits, tokenizer):
    raw = load_raw(DataConfig(path=str(EMOTION)))
    for name, ds, rows, texts in (
        ("validation", splits.validation, splits.validation_rows, splits.validation_texts),
        ("test", splits.test, splits.test_rows, splits.test_texts),
    ):
        lengths = [len(ids) for ids in ds["input_ids"]]
        # A stratified sample of 200 rows: each row's index in the raw split, each once.
        assert len(set(rows)) == len(rows) == 200 and max(rows) < len(raw[name])
        # Shortest first; equal lengths keep their raw row order (a stable sort).
        assert list(zip(lengths, rows, strict=True)) == sorted(zip(lengths, rows, strict=True))
        assert texts == [raw[name][r]["text"] for r in rows]
        assert ds["labels"] == [raw[name][r]["label"] for r in rows]
        assert ds["input_ids"][0] == tokenizer(texts[0])["input_ids"]
        assert "text" not in ds.column_names and "row" not in ds.column_names
    assert set(splits.train.column_names) == {"input_ids", "attention_mask", "labels"}


def test_batches_are_padded_to_their_longest_text_not_to_128(splits, tokenizer):
    train, val, _ = make_loaders(
        splits,
        tokenizer,
        TrainerConfig(batch_size=32, eval_batch_size=64, length_group_factor=50),
        DataConfig(),
        seed=0,
    )
    for batch in list(train) + list(val):
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == lengths.max()
        assert batch["input_ids"].shape[1] < 128
        # right padding: real tokens first, padding after
        mask = batch["attention_mask"]
        assert torch.equal(mask, mask.sort(dim=1, descending=True).values)


def _trainer(group_by_length: bool) -> TrainerConfig:
    return TrainerConfig(
        batch_size=32, eval_batch_size=64, length_group_factor=50, group_by_length=group_by_length
    )


def _padding_share(loader) -> float:
    padded = real = 0
    for batch in loader:
        padded += batch["attention_mask"].numel()
        real += batch["attention_mask"].sum().item()
    return 1 - real / padded


def test_length_grouping_cuts_padding(splits, tokenizer):
    grouped, *_ = make_loaders(splits, tokenizer, _trainer(group_by_length=True), DataConfig(), 0)
    shuffled, *_ = make_loaders(splits, tokenizer, _trainer(group_by_length=False), DataConfig(), 0)
    assert _padding_share(grouped) < 0.5 * _padding_share(shuffled)


def test_sampler_yields_every_index_once_per_epoch_and_reshuffles():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=32, seed=1, group_factor=4)
    epoch1 = list(sampler)
    assert len(epoch1) == len(sampler) == 32
    assert sorted(i for b in epoch1 for i in b) == list(range(1000))
    assert epoch1 == list(sampler)  # same epoch, same order
    sampler.set_epoch(2)
    assert epoch1 != list(sampler)


def test_the_batch_with_the_longest_text_comes_first_in_every_epoch():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    lengths[613] = 99  # one text longer than all the others
    for factor in (1, 4):
        sampler = LengthGroupedBatchSampler(lengths, batch_size=32, seed=1, group_factor=factor)
        firsts = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert 613 in batches[0]
            assert sorted(i for b in batches for i in b) == list(range(1000))
            firsts.append(batches[0])
        assert firsts[0] != firsts[1]  # still shuffled around it


def test_missing_local_path_is_a_clear_error():
    with pytest.raises(DataError, match="data.path=/no/such/dir: no such file or directory"):
        load_raw(DataConfig(path="/no/such/dir"))


def test_unknown_column_is_a_clear_error():
    cfg = DataConfig(path=str(EMOTION), text_column="tweet", max_train_samples=10)
    with pytest.raises(DataError, match="data.text_column=tweet is not a column"):
        load_splits(cfg, seed=0)


# Tokenizes in a fresh process: twice (the second time with a tokenizer already used, whose
# truncation state has changed), then once with another max_length. Prints the fingerprints.
_TOKENIZE = """
import json, sys
from emotion_lab.config import DataConfig
from emotion_lab.data import load_splits, tokenize_splits
from emotion_lab.modeling import load_tokenizer
tok = load_tokenizer("distilgpt2")
cfg = DataConfig(path=sys.argv[1], max_train_samples=64, max_eval_samples=32)
data = load_splits(cfg, seed=0)
runs = [tokenize_splits(data, tok, m) for m in (128, 128, 64)]
print(json.dumps([[s._fingerprint for s in (r.train, r.validation, r.test)] for r in runs]))
"""


def test_tokenized_splits_are_reused_across_processes(tmp_path):
    """A sweep's jobs, each in its own process or one after another, read the tokenized splits
    from the datasets cache: same data and settings give the same fingerprint everywhere."""
    env = {"HF_DATASETS_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-c", _TOKENIZE, str(EMOTION)]
    found, cache_files = [], []
    for _ in range(2):
        _, done = run_process(cmd, tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        found.append(json.loads(done.stdout.strip().splitlines()[-1]))
        cache_files.append(sorted(p.name for p in (tmp_path / "cache").rglob("cache-*.arrow")))
    (first, again, shorter), second_process = found
    assert first == again == second_process[0] == second_process[1]
    assert all(a != b for a, b in zip(first, shorter, strict=True))
    assert cache_files[0], "the tokenized splits must be cached"
    assert cache_files[1] == cache_files[0], "the second process must tokenize nothing anew"
