"""The per-text pictures: token labels on both axes, one file per view, bertviz only if present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emotion_lab.attention import bertviz_export, plots
from emotion_lab.attention.analysis import draw_example
from emotion_lab.attention.extract import load_model_config
from emotion_lab.attention.tokens import encode_texts
from emotion_lab.config import Init, ModelConfig

TINY = ModelConfig(config_overrides={"n_layer": 2, "n_head": 2, "n_embd": 32})


@pytest.fixture(scope="module")
def tiny():
    return load_model_config(TINY, Init.scratch, seed=0)


def test_attention_map_has_token_labels_on_both_axes():
    labels = ["i", "feel", "ré", "##sum", "##é"]
    weights = np.tril(np.ones((5, 5)))
    weights /= weights.sum(1, keepdims=True)
    fig = plots.attention_map_figure(weights, labels, "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels


def test_heads_grid_has_one_panel_per_head():
    weights = np.random.default_rng(0).random((3, 4, 4))
    fig = plots.heads_grid_figure(weights, list("abcd"), 0, "t")
    titled = [ax for ax in fig.axes if ax.get_title().startswith("layer 0 head")]
    assert len(titled) == 3


def test_draw_example_files(tiny, tmp_path: Path):
    (example,) = encode_texts(tiny.tokenizer, ["i feel so happy"], 32)
    names = draw_example(tiny, example, layer=-1, head=1, out_dir=tmp_path, bertviz=True)
    assert names[:2] == ["attention_L1_H1.png", "heads_L1.png"]
    html = [n for n in names if n.endswith(".html")]
    assert html == (["head_view.html", "model_view.html"] if bertviz_export.available() else [])
    for name in names:
        assert (tmp_path / name).stat().st_size > 0


def test_bertviz_views_embed_the_attention_and_say_they_need_network(tiny):
    pytest.importorskip("bertviz")
    (example,) = encode_texts(tiny.tokenizer, ["i feel so happy"], 32)
    from emotion_lab.attention.extract import forward_attention

    attentions = forward_attention(tiny, [example])[0][:, 0]
    views = bertviz_export.views(attentions, example.labels)
    assert set(views) == {"head_view.html", "model_view.html"}
    for html in views.values():
        assert html.startswith(bertviz_export.NOTE)
        assert "cdnjs.cloudflare.com" in html
        assert json.dumps(example.labels)[1:-1] in html
