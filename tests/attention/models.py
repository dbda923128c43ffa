"""Small models with known structure for the causal analysis tests (random weights, no files)."""

from __future__ import annotations

import torch
from transformers import (
    AutoConfig,
    BertConfig,
    BertForSequenceClassification,
    GPT2ForSequenceClassification,
)

from emotion_lab.attention.extract import EAGER, LoadedModel
from emotion_lab.config import ModelConfig
from emotion_lab.modeling import load_tokenizer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "i feel happy",
    "i am feeling rather sad and lonely tonight because nobody called",
    "so angry at everyone",
    "i love the way the sun feels on my skin",
    "ok then",
    "this is fine i guess",
]


def sharpen(model: torch.nn.Module, scale: float) -> None:
    """Larger query/key weights: distinct, peaked attention per head (random init is flat)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "c_attn.weight" in name or "query.weight" in name or "key.weight" in name:
                p.mul_(scale)


def tiny_gpt2(layers: int = 2, heads: int = 4, labels: int = 3, seed: int = 0) -> LoadedModel:
    tokenizer = load_tokenizer(ModelConfig().tokenizer_name)
    config = AutoConfig.from_pretrained(
        "distilgpt2",
        n_layer=layers,
        n_head=heads,
        n_embd=8 * heads,
        num_labels=labels,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation=EAGER,
    )
    torch.manual_seed(seed)
    model = GPT2ForSequenceClassification(config).eval()
    sharpen(model, 20.0)
    return LoadedModel("tiny-gpt2", model, tokenizer, causal=True)


def tiny_bert(layers: int = 2, heads: int = 4, labels: int = 3, seed: int = 0) -> LoadedModel:
    tokenizer = load_tokenizer(MINILM)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=8 * heads,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=32,
        num_labels=labels,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation=EAGER,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    sharpen(model, 20.0)
    return LoadedModel("tiny-bert", model, tokenizer, causal=False)


def _head_slices(weight: torch.Tensor, dim: int, heads: int, perm: list[int]) -> torch.Tensor:
    """``weight`` with its head-major slices along ``dim`` reordered: new head h = old perm[h]."""
    chunks = weight.chunk(heads, dim=dim)
    return torch.cat([chunks[p] for p in perm], dim=dim)


def permute_gpt2_heads(model: GPT2ForSequenceClassification, layer: int, perm: list[int]) -> None:
    """Reorder one layer's heads in the weights: q, k, v columns of c_attn and rows of c_proj."""
    attn = model.transformer.h[layer].attn
    heads = model.config.n_head
    with torch.no_grad():
        w, b = attn.c_attn.weight, attn.c_attn.bias
        parts_w = [_head_slices(x, 1, heads, perm) for x in w.chunk(3, dim=1)]
        parts_b = [_head_slices(x, 0, heads, perm) for x in b.chunk(3, dim=0)]
        w.copy_(torch.cat(parts_w, dim=1))
        b.copy_(torch.cat(parts_b, dim=0))
        attn.c_proj.weight.copy_(_head_slices(attn.c_proj.weight, 0, heads, perm))


def one_head_decides(layer: int, head: int, seed: int = 0) -> LoadedModel:
    """A 2-layer, 4-head GPT-2 in which every head but (layer, head) writes nothing: the value
    projections of the others are zero, so only that head can carry anything to the decision."""
    loaded = tiny_gpt2(layers=2, heads=4, labels=3, seed=seed)
    model = loaded.model
    width = model.config.n_embd // 4
    with torch.no_grad():
        for lay, block in enumerate(model.transformer.h):
            v = block.attn.c_attn.weight[:, 2 * model.config.n_embd :]
            vb = block.attn.c_attn.bias[2 * model.config.n_embd :]
            for h in range(4):
                if (lay, h) != (layer, head):
                    v[:, h * width : (h + 1) * width] = 0
                    vb[h * width : (h + 1) * width] = 0
                else:
                    v[:, h * width : (h + 1) * width] *= 10
        model.score.weight.mul_(10)
    return loaded
