"""Tokenizer and classifier construction, from scratch or from pretrained weights."""

from __future__ import annotations

import logging
from typing import Any

from huggingface_hub import constants
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from emotion_lab.config import Init, ModelConfig
from emotion_lab.errors import ModelError, one_line

log = logging.getLogger(__name__)

_LOCAL_DIR = (
    "set model.name_or_path to a local directory holding config.json, the tokenizer files and "
    "model.safetensors"
)


def _where_to_get_it() -> str:
    """What to do about a model file that could not be loaded, given the offline setting."""
    if constants.is_offline_mode():
        return (
            f"HF_HUB_OFFLINE=1 is set, so only the Hugging Face cache {constants.HF_HUB_CACHE} "
            f"was searched: download it there where the Hub is reachable, or {_LOCAL_DIR}."
        )
    return (
        "If the Hugging Face Hub is unreachable, download it where you have network (it lands in "
        f"HF_HUB_CACHE) and run with HF_HUB_OFFLINE=1, or {_LOCAL_DIR}."
    )


def _hub_call(what: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        raise ModelError(
            f"cannot load the {what} of {name!r}: {one_line(e)} {_where_to_get_it()}"
        ) from e


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer by hub id or local dir; GPT-2 style tokenizers get pad = eos, padded on
    the right (the classifier pools the last non-pad token, which right padding keeps simple)."""
    tokenizer = _hub_call(
        "tokenizer", name, AutoTokenizer.from_pretrained, name, trust_remote_code=False
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _architecture(cfg: ModelConfig) -> PretrainedConfig:
    """The model's config (config.json alone) with ``model.config_overrides`` applied."""
    config = _hub_call("config", cfg.name_or_path, AutoConfig.from_pretrained, cfg.name_or_path)
    for key, value in cfg.config_overrides.items():
        if not hasattr(config, key):
            raise ModelError(
                f"model.config_overrides.{key}: {type(config).__name__} has no such field."
            )
        setattr(config, key, value)
    return config


def check_max_length(cfg: ModelConfig) -> None:
    """Refuse a ``model.max_length`` the model has no positions for, before anything loads.

    Longer inputs would index past the position embeddings: an IndexError on CPU, a device-side
    assert that kills the process on a GPU. Models without absolute positions have no limit.
    """
    limit = getattr(_architecture(cfg), "max_position_embeddings", None)
    if isinstance(limit, int) and cfg.max_length > limit:
        raise ModelError(
            f"model.max_length={cfg.max_length} is more than {cfg.name_or_path} has positions "
            f"for ({limit}); set model.max_length<={limit}."
        )


def build_config(
    cfg: ModelConfig, label_names: list[str], tokenizer: PreTrainedTokenizerBase
) -> PretrainedConfig:
    config = _architecture(cfg)
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.pad_token_id = tokenizer.pad_token_id
    if cfg.fused_gelu and getattr(config, "activation_function", None) == "gelu_new":
        # gelu_new is five elementwise ops in Python, each rounded (to bf16 under autocast);
        # PyTorch's tanh GELU computes the same formula in one kernel: 15% of a CPU evaluation
        # and 4% of a training step on distilgpt2 (docs/benchmarks.md).
        config.activation_function = "gelu_pytorch_tanh"
    return config


def check_init(cfg: ModelConfig, init: Init) -> None:
    """Pretrained weights only load into the architecture they were trained with."""
    if init is Init.pretrained and cfg.config_overrides:
        raise ModelError(
            "model.config_overrides change the architecture, so pretrained weights cannot be "
            "loaded into it. Use init=scratch, or point model.name_or_path at a checkpoint of "
            "that shape."
        )


def build_model(
    cfg: ModelConfig,
    init: Init,
    label_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    attn_implementation: str = "sdpa",
) -> PreTrainedModel:
    """``scratch``: fresh weights from the config; ``pretrained``: load the checkpoint's weights.

    SDPA is the fast path for training; pass ``eager`` only when attention weights are needed.
    """
    config = build_config(cfg, label_names, tokenizer)
    if init is Init.scratch:
        return AutoModelForSequenceClassification.from_config(
            config, attn_implementation=attn_implementation
        )
    check_init(cfg, init)
    model = _hub_call(
        "pretrained weights",
        cfg.name_or_path,
        AutoModelForSequenceClassification.from_pretrained,
        cfg.name_or_path,
        config=config,
        attn_implementation=attn_implementation,
        # A checkpoint fine-tuned on another label set gets a fresh head of the right size.
        ignore_mismatched_sizes=True,
    )
    log.info("Loaded pretrained weights of %s; the classification head is new.", cfg.name_or_path)
    return model
