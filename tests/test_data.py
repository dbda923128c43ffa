"""Real emotion data from ../shared: label names, dynamic padding, length grouping."""

from __future__ import annotations

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
from tests.conftest import EMOTION


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


def test_batches_are_padded_to_their_longest_text_not_to_128(splits, tokenizer):
    train, val, _, _ = make_loaders(
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


def test_missing_local_path_is_a_clear_error():
    with pytest.raises(DataError, match="data.path=/no/such/dir: no such file or directory"):
        load_raw(DataConfig(path="/no/such/dir"))


def test_unknown_column_is_a_clear_error():
    cfg = DataConfig(path=str(EMOTION), text_column="tweet", max_train_samples=10)
    with pytest.raises(DataError, match="data.text_column=tweet is not a column"):
        load_splits(cfg, seed=0)
