"""Head statistics on models whose attention is known by construction, and padding."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, GPT2ForSequenceClassification

from emotion_lab.attention import report
from emotion_lab.attention.analysis import head_statistics
from emotion_lab.attention.extract import AttentionBatch, load_model_dir
from emotion_lab.attention.stats import HeadStatsAccumulator
from emotion_lab.attention.tokens import EncodedText, encode_texts
from emotion_lab.config import ModelConfig
from emotion_lab.modeling import load_tokenizer

TEXTS = [
    "i feel happy",
    "i am feeling rather sad and lonely tonight because nobody called me",
    "so angry",
    "i love the way the sun feels on my skin in the morning",
    "ok",
    "i feel happy",
]
SCALE = 100.0  # makes the constructed patterns sharp: the softmax puts ~all mass on one key


def _constructed_gpt2(path: Path) -> Path:
    """One layer, four heads of 32 dims. Token embeddings are zero and position p is one-hot
    in dimension p, so after LayerNorm a token only knows its position. Then:
    head 0 = previous token, head 1 = itself, head 2 = the first token, head 3 = uniform."""
    tok = load_tokenizer(ModelConfig().tokenizer_name)
    config = AutoConfig.from_pretrained(
        "distilgpt2", n_layer=1, n_head=4, n_embd=128, num_labels=2, pad_token_id=50256
    )
    model = GPT2ForSequenceClassification(config)
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
        model.transformer.wpe.weight.zero_()
        model.transformer.wpe.weight[:32, :32] = torch.eye(32)
        w = model.transformer.h[0].attn.c_attn.weight  # [in, q | k | v]
        b = model.transformer.h[0].attn.c_attn.bias
        w.zero_()
        b.zero_()
        q, k = 0, 128
        # head 0: q_i[d] = x_i[d + 1] peaks at d = i - 1, k_j[d] = x_j[d] peaks at d = j
        w[1:32, q : q + 31] = SCALE * torch.eye(31)
        w[:32, k : k + 32] = torch.eye(32)
        # head 1: q_i[d] = x_i[d], k_j[d] = x_j[d]
        w[:32, q + 32 : q + 64] = SCALE * torch.eye(32)
        w[:32, k + 32 : k + 64] = torch.eye(32)
        # head 2: a constant query that matches the key of position 0 only
        b[q + 64] = SCALE
        w[0, k + 64] = 1.0
        # head 3: all scores zero -> uniform over the visible keys
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def constructed(tmp_path_factory: pytest.TempPathFactory):
    path = _constructed_gpt2(tmp_path_factory.mktemp("constructed"))
    return load_model_dir(path, "constructed")


def test_constructed_heads_are_recognised(constructed):
    assert constructed.causal and constructed.shape == (1, 4)
    encoded = encode_texts(constructed.tokenizer, TEXTS, max_length=32)
    stats = head_statistics(constructed, encoded, batch_size=4)
    t = stats.table.set_index("head")
    assert t.loc[0, "previous"] == pytest.approx(1, abs=1e-4)
    assert t.loc[1, "self"] == pytest.approx(1, abs=1e-4)
    assert t.loc[2, "first"] == pytest.approx(1, abs=1e-4)
    for head in (0, 1, 2):
        assert t.loc[head, "entropy"] == pytest.approx(0, abs=1e-2)
    # uniform over q + 1 visible keys: entropy log(q + 1), the largest possible
    queries = [q for e in encoded for q in range(1, len(e.input_ids))]
    assert stats.num_queries == len(queries)
    mean_log = sum(math.log(q + 1) for q in queries) / len(queries)
    assert t.loc[3, "entropy"] == pytest.approx(mean_log, rel=1e-5)
    assert t.loc[3, "entropy_norm"] == pytest.approx(1, rel=1e-5)
    assert t.loc[3, "first"] == pytest.approx(sum(1 / (q + 1) for q in queries) / len(queries))
    assert t["next"].max() == 0  # causal
    roles = report.head_roles(stats).set_index("head")["role"].to_dict()
    assert roles == {0: "previous-token", 1: "self", 2: "sink", 3: "broad"}
    assert stats.padding_mass == 0


def test_uniform_attention_gives_every_word_lift_one(constructed):
    """Head 3 spreads evenly and heads 0-2 pick keys by position only, so no word stands out
    beyond what position explains; with uniform heads alone every lift would be exactly 1."""
    encoded = encode_texts(constructed.tokenizer, TEXTS, max_length=32)
    stats = head_statistics(constructed, encoded, batch_size=8)
    words = stats.words.set_index("word")
    assert words.loc["feel", "count"] == 2  # "i feel happy" twice ("i" sits first: no count)
    assert "ok" not in words.index  # only ever the first token: the sink is excluded
    assert words["share"].sum() == pytest.approx(1)
    assert stats.first_tokens["i"] == 4


def _flat_batch(attn: torch.Tensor, mask: torch.Tensor) -> AttentionBatch:
    return AttentionBatch(attn[None, :, None], mask, list(range(mask.shape[0])))


def _encoded(words: list[str], width: int) -> EncodedText:
    return EncodedText(" ".join(words), list(range(len(words))), words, words, [True] * len(words))


def test_padding_gets_no_mass_even_from_a_model_that_leaks():
    """Hand-made weights: a 3-token text padded to 5. The real rows put some mass on padding
    keys and the padded rows attend anywhere; neither may count."""
    attn = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.5, 0.3, 0.0, 0.2, 0.0],  # 0.2 leaks onto padding
            [0.2, 0.3, 0.5, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],  # padded queries: ignored
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    mask = torch.tensor([[True, True, True, False, False]])
    acc = HeadStatsAccumulator(1, 1, causal=True)
    acc.update(_flat_batch(attn[None], mask), [_encoded(["a", "b", "c"], 5)])
    stats = acc.result()
    row = stats.table.iloc[0]
    assert stats.num_queries == 2
    assert stats.padding_mass == pytest.approx(0.2)
    assert row["first"] == pytest.approx((0.5 + 0.2) / 2)
    assert row["previous"] == pytest.approx((0.5 + 0.3) / 2)
    assert row["self"] == pytest.approx((0.3 + 0.5) / 2)
    entropy = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3)) - (
        0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5)
    )
    assert row["entropy"] == pytest.approx(entropy / 2)
    words = stats.words.set_index("word")
    assert set(words.index) == {"b", "c"}
    # received without the sink: b gets 0.3/0.5 from query 1 and 0.3/0.8 from query 2
    assert words.loc["b", "share"] == pytest.approx((0.6 + 0.375) / (0.6 + 0.375 + 0.625))


@pytest.mark.parametrize(
    ("name", "overrides", "scale"),
    [
        ("distilgpt2", {"n_layer": 2, "n_head": 2, "n_embd": 32}, "attn.c_attn"),
        (
            "sentence-transformers/all-MiniLM-L6-v2",
            {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 32},
            "attention.self",
        ),
    ],
)
def test_statistics_do_not_depend_on_padding(tmp_path: Path, name, overrides, scale):
    """Each text alone (no padding) and all texts in one padded batch give the same numbers,
    for a causal (GPT-2) and a bidirectional (BERT) model with sharp random attention."""
    from emotion_lab.config import Init
    from emotion_lab.modeling import build_model

    cfg = ModelConfig(name_or_path=name, config_overrides=overrides)
    tok = load_tokenizer(cfg.tokenizer_name)
    torch.manual_seed(0)
    model = build_model(cfg, Init.scratch, ["a", "b"], tok)
    with torch.no_grad():
        for module_name, param in model.named_parameters():
            if scale in module_name and param.dim() == 2:
                param.mul_(40)  # far from uniform, so that misplaced mass would show
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_model_dir(tmp_path, name)
    encoded = encode_texts(loaded.tokenizer, TEXTS, max_length=32)
    alone = head_statistics(loaded, encoded, batch_size=1)
    padded = head_statistics(loaded, encoded, batch_size=len(TEXTS))
    assert padded.padding_mass == 0 == alone.padding_mass
    assert padded.table["entropy"].min() < 0.8 * padded.table["entropy"].max()
    cols = ["entropy", "entropy_norm", "first", "previous", "self", "next"]
    close = {"rtol": 1e-4, "atol": 1e-6}  # float32 kernels of other shapes round differently
    torch.testing.assert_close(
        torch.tensor(padded.table[cols].to_numpy()),
        torch.tensor(alone.table[cols].to_numpy()),
        **close,
    )
    a = alone.words.set_index("word").sort_index()
    p = padded.words.set_index("word").sort_index()
    assert list(a.index) == list(p.index)
    torch.testing.assert_close(
        torch.tensor(p[["share", "lift"]].to_numpy()),
        torch.tensor(a[["share", "lift"]].to_numpy()),
        **close,
    )
    assert loaded.causal == (name == "distilgpt2")
