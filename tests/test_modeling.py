"""Real tokenizers/configs from the shared hub cache; real pretrained weights with MiniLM."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file

from emotion_lab.config import Init, ModelConfig
from emotion_lab.errors import ModelError
from emotion_lab.modeling import build_model, load_tokenizer

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_distilgpt2_tokenizer_encodes_real_gpt2_ids_and_pads_with_eos():
    tok = load_tokenizer(ModelConfig().tokenizer_name)
    assert tok("hello world")["input_ids"] == [31373, 995]
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert tok.padding_side == "right"


def test_scratch_distilgpt2_has_the_real_architecture_and_dataset_labels():
    cfg = ModelConfig()
    tok = load_tokenizer(cfg.tokenizer_name)
    model = build_model(cfg, Init.scratch, LABELS, tok)
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    assert model.config.n_layer == 6 and model.config.n_embd == 768
    assert model.config.num_labels == 6
    assert model.config.id2label[5] == "surprise"
    assert model.config.pad_token_id == tok.eos_token_id == 50256


def test_padding_does_not_change_gpt2_predictions():
    """The classifier pools the last real token, so a padded text scores as it does alone."""
    cfg = ModelConfig(config_overrides={"n_layer": 2, "n_head": 2, "n_embd": 32})
    tok = load_tokenizer(cfg.tokenizer_name)
    torch.manual_seed(0)
    model = build_model(cfg, Init.scratch, LABELS, tok).eval()
    short = "i feel happy"
    alone = model(**tok([short], return_tensors="pt")).logits
    batch = tok(
        [short, "a much longer text that forces padding on the short one"],
        return_tensors="pt",
        padding=True,
    )
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]
    padded = model(**batch).logits[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)


def test_minilm_pretrained_loads_the_checkpoint_weights():
    cfg = ModelConfig(name_or_path=MINILM)
    tok = load_tokenizer(cfg.tokenizer_name)
    checkpoint = load_file(hf_hub_download(MINILM, "model.safetensors"))
    key = next(k for k in checkpoint if k.endswith("word_embeddings.weight"))
    pretrained = build_model(cfg, Init.pretrained, LABELS, tok)
    scratch = build_model(cfg, Init.scratch, LABELS, tok)
    loaded = pretrained.base_model.embeddings.word_embeddings.weight
    assert torch.equal(loaded, checkpoint[key])
    assert not torch.equal(scratch.base_model.embeddings.word_embeddings.weight, checkpoint[key])
    assert pretrained.classifier.out_features == 6


def test_pretrained_distilgpt2_offline_says_what_is_missing():
    cfg = ModelConfig()
    tok = load_tokenizer(cfg.tokenizer_name)
    with pytest.raises(ModelError) as err:
        build_model(cfg, Init.pretrained, LABELS, tok)
    message = str(err.value)
    assert "pretrained weights of 'distilgpt2'" in message
    assert "model.name_or_path" in message and "\n" not in message
    # The tests run offline: the hint says so, instead of telling to set what is set.
    assert "HF_HUB_OFFLINE=1 is set, so only the Hugging Face cache" in message
    assert "run with HF_HUB_OFFLINE=1" not in message


def test_unknown_config_override_is_a_clear_error():
    cfg = ModelConfig(config_overrides={"n_layers": 2})
    with pytest.raises(ModelError, match="config_overrides.n_layers"):
        build_model(cfg, Init.scratch, LABELS, load_tokenizer(cfg.tokenizer_name))
