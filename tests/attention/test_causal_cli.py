"""The causal analysis end to end, on a model where the answer is known: a tiny GPT-2 trained
through the normal CLI on texts in which one word decides the label."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from emotion_lab.store import names
from tests.attention.test_cli import _artifact, _runs, run_attention
from tests.attention.test_html_report import assert_offline
from tests.conftest import run_cli, tracking_uri

pytestmark = pytest.mark.slow

KEYWORDS = {"apple": "fruit", "river": "water", "engine": "machine"}
FILLER = [
    "the",
    "a",
    "one",
    "we",
    "they",
    "it",
    "was",
    "is",
    "some",
    "very",
    "then",
    "and",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "my",
    "our",
    "this",
    "that",
    "day",
    "time",
    "way",
    "thing",
    "place",
    "people",
    "here",
    "there",
    "now",
    "just",
]


def keyword_texts(n: int, seed: int) -> pd.DataFrame:
    """Six to ten filler words and one keyword at a random place; the keyword is the label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        keyword = list(KEYWORDS)[i % len(KEYWORDS)]
        words = list(rng.choice(FILLER, size=rng.integers(6, 11)))
        words.insert(int(rng.integers(0, len(words) + 1)), keyword)
        rows.append({"text": " ".join(words), "label": KEYWORDS[keyword]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("keyword")
    data = cwd / "keywords"
    data.mkdir()
    for split, n, seed in (("train", 480, 0), ("validation", 60, 1), ("test", 60, 2)):
        keyword_texts(n, seed).to_csv(data / f"{split}.csv", index=False)
    train = run_cli(
        [
            "model=tiny_gpt2",
            "init=scratch",
            f"data.path={data}",
            "data.name=null",
            "lr=3e-3",
            "trainer.epochs=6",
            "trainer.batch_size=16",
            "trainer.mixed_precision=no",
            "trainer.early_stopping_patience=0",
        ],
        cwd,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    (run,) = _runs(cwd, "job")
    assert run.data.metrics["test_accuracy"] >= 0.9, run.data.metrics
    proc = run_attention(
        [
            f"run_id={run.info.run_id}",
            "num_texts=20",
            "num_causal_texts=30",
            "ig_steps=8",
            "bootstrap_resamples=300",
            "bertviz=false",
        ],
        cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, run, proc


def test_the_deciding_word_tops_every_class(keyword_run):
    cwd, run, _ = keyword_run
    words = pd.read_csv(
        _artifact(cwd, run.info.run_id, f"attention/{names.WORDS_BY_CLASS_ARTIFACT}")
    )
    first = words[(words.group == "predicted") & (words["rank"] == 1)].set_index("class")
    assert {c: first.loc[c, "word"] for c in first.index} == {v: k for k, v in KEYWORDS.items()}
    assert (first["count"] >= 5).all() and (first.score_low > 0).all()


def test_a_real_attribution_is_far_more_faithful_than_random(keyword_run):
    cwd, run, proc = keyword_run
    table = pd.read_csv(_artifact(cwd, run.info.run_id, f"attention/{names.FAITHFULNESS_ARTIFACT}"))
    t = table.set_index("method")
    assert set(t.index) == {
        "attention",
        "rollout",
        "grad_x_input",
        "integrated_gradients",
        "leave_one_out",
        "random",
    }
    best = table.iloc[0]
    assert best.method != "random" and best.gain_vs_random_low > 0.2
    assert t.loc["leave_one_out", "comprehensiveness"] > t.loc["random", "comprehensiveness"] + 0.2
    assert re.search(
        r"is the most faithful explanation \(comprehensiveness [\d.]+ vs random", proc.stdout
    )


def test_head_importance_and_the_offline_report(keyword_run):
    cwd, run, proc = keyword_run
    heads = pd.read_csv(
        _artifact(cwd, run.info.run_id, f"attention/{names.HEAD_IMPORTANCE_ARTIFACT}")
    )
    assert len(heads) == 4 and {"dloss", "dloss_low", "dacc_high", "gradient", "matters"} <= set(
        heads
    )
    assert np.allclose(heads.groupby("layer").gradient.apply(lambda g: np.sqrt((g**2).sum())), 1)
    assert "heads matter (ablation interval excludes 0)" in proc.stdout
    html = _artifact(
        cwd, run.info.run_id, f"attention/{names.ATTENTION_REPORT_ARTIFACT}"
    ).read_text()
    assert_offline(html)
    assert "Findings" in html and "data:image/png;base64," in html


def test_headline_metrics_are_named_in_the_store_contract(keyword_run):
    cwd, run, _ = keyword_run
    metrics = MlflowClient(tracking_uri(cwd)).get_run(run.info.run_id).data.metrics
    templates = [
        names.LAYER_ABLATION_DLOSS_METRIC,
        names.LAYER_ABLATION_DACC_METRIC,
        names.COMPREHENSIVENESS_METRIC,
        names.SUFFICIENCY_METRIC,
        names.HEADS_THAT_MATTER_METRIC,
        names.IMPORTANCE_SPEARMAN_METRIC,
        names.IG_COMPLETENESS_METRIC,
    ]
    patterns = [re.compile(re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(t)) + "$") for t in templates]
    new = {
        m
        for m in metrics
        if not m.startswith(
            ("attn_entropy", "attn_first", "attn_previous", "attn_self", "attn_sink")
        )
    }
    new = {m for m in new if m.startswith("attn_")}
    assert new and all(any(p.match(m) for p in patterns) for m in new), new
    assert names.LAYER_ABLATION_DLOSS_METRIC.format(layer=1) in metrics
    assert names.COMPREHENSIVENESS_METRIC.format(method="integrated_gradients") in metrics


def test_causal_false_skips_it(keyword_run):
    cwd, run, _ = keyword_run
    proc = run_attention(
        [f"run_id={run.info.run_id}", "num_texts=5", "causal=false", "bertviz=false"], cwd
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "What matters" not in proc.stdout
