"""The composed Hydra config is validated: typos, wrong types and bad values name the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from emotion_lab.config import CONFIG_DIR, Config, Init, register_schemas
from emotion_lab.errors import ConfigError

register_schemas()  # as the entry point does: config.yaml extends the registered schema


def load(*overrides: str) -> Config:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=list(overrides)))


def test_defaults_compose_to_typed_config():
    cfg = load()
    assert isinstance(cfg, Config)
    assert cfg.model.name_or_path == "distilgpt2"
    assert cfg.data.path == "dair-ai/emotion"
    assert cfg.init is Init.pretrained
    assert cfg.optimizer.name == "adamw"


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("model=minilm", "sentence-transformers/all-MiniLM-L6-v2"),
        ("model=gpt2", "gpt2"),
        ("model=tiny_gpt2", "distilgpt2"),
    ],
)
def test_model_group(group: str, expected: str):
    assert load(group).model.name_or_path == expected


def test_optimizer_groups():
    assert load("optimizer=sgd").optimizer.name == "sgd"
    assert load("optimizer=adam").optimizer.name == "adam"


def test_public_keys_override():
    cfg = load("init=scratch", "lr=1e-5", "seed=3", "data.max_train_samples=10", "trainer.epochs=2")
    assert (cfg.init, cfg.lr, cfg.seed) == (Init.scratch, 1e-5, 3)
    assert cfg.data.max_train_samples == 10 and cfg.trainer.epochs == 2


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("trainer.epoch=3", "epoch"),
        ("lr=abc", "lr"),
        ("init=finetuned", "init"),
        ("model=nosuchmodel", "nosuchmodel"),
    ],
)
def test_bad_config_is_a_composition_error_naming_the_key(override: str, needle: str):
    with pytest.raises(ConfigCompositionException) as err:
        load(override)
    text = f"{err.value} {err.value.__cause__}"
    assert needle in text


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("lr=0", "lr"),
        ("trainer.epochs=-1", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.monitor=val_acc", "trainer.monitor"),
        ("optimizer.name=lion", "optimizer.name"),
        ("optimizer.implementation=fast", "optimizer.implementation"),
        ("model.attn_implementation=flash", "model.attn_implementation"),
        ("trainer.length_group_factor=0", "trainer.length_group_factor"),
        ("trainer.dropout_masks=fast", "trainer.dropout_masks"),
        ("trainer.embedding_grad=sparse", "trainer.embedding_grad"),
    ],
)
def test_out_of_range_values_name_the_key(override: str, key: str):
    with pytest.raises(ConfigError, match=f"^{key}="):
        load(override)
