"""`python -m emotion_lab.attention` as a user runs it, on the runs of a real (tiny) sweep."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from emotion_lab.compare.config import CompareConfig
from emotion_lab.compare.paired import choose_pair
from emotion_lab.compare.runs import read_sweep
from emotion_lab.store.reader import group_keys, make_groups
from tests.conftest import EMOTION, REPO, one_error_line, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


def run_attention(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emotion_lab.attention", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture(scope="module")
def analysed(seed_sweep: dict):
    """The attention analysis of the shared init x seed sweep."""
    cwd = seed_sweep["cwd"]
    (sweep_dir,) = (cwd / "outputs" / "multirun").iterdir()
    proc = run_attention(
        [
            f"sweep_id={sweep_dir.name}",
            f"data.path={EMOTION}",
            "num_texts=40",
            "num_causal_texts=24",
            "ig_steps=4",
            "bootstrap_resamples=200",
        ],
        cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, proc


def _runs(cwd: Path, role: str) -> list:
    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab")
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`emotion_lab.role` = '{role}'"
    )


def _artifact(cwd: Path, run_id: str, path: str) -> Path:
    return Path(
        download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=tracking_uri(cwd))
    )


def _analysed_runs(cwd: Path) -> list:
    """The job runs the analysis logged to."""
    client = MlflowClient(tracking_uri(cwd))
    return [r for r in _runs(cwd, "job") if client.list_artifacts(r.info.run_id, "attention")]


def test_each_run_gets_its_statistics_figures_and_metrics(analysed):
    cwd, _ = analysed
    client = MlflowClient(tracking_uri(cwd))
    jobs = _analysed_runs(cwd)
    assert len(jobs) == 2
    for run in jobs:
        names = {a.path for a in client.list_artifacts(run.info.run_id, "attention")}
        expected = [
            "head_stats.csv",
            "head_stats.json",
            "head_stats.png",
            "words.csv",
            "summary.md",
            "attention_L1_H0.png",  # layer=-1: the last of two
            "heads_L1.png",
            "head_importance.csv",
            "faithfulness.csv",
            "words_by_class.csv",
            "head_importance.png",
            "faithfulness.png",
            "report.html",
        ]
        assert {f"attention/{n}" for n in expected} <= names
        for png in ("head_stats.png", "attention_L1_H0.png", "heads_L1.png"):
            assert _artifact(cwd, run.info.run_id, f"attention/{png}").read_bytes()[:8] == PNG
        table = pd.read_csv(_artifact(cwd, run.info.run_id, "attention/head_stats.csv"))
        assert list(zip(table.layer, table["head"], strict=True)) == [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
        ]
        assert table[["first", "previous", "self"]].to_numpy().max() <= 1
        assert (table["entropy"] > 0).all()
        metrics = run.data.metrics
        for stat in ("entropy", "first", "previous", "self"):
            for layer in (0, 1):
                expected_mean = table.loc[table.layer == layer, stat].mean()
                assert metrics[f"attn_{stat}_L{layer}"] == pytest.approx(expected_mean, rel=1e-6)
            steps = [m.step for m in client.get_metric_history(run.info.run_id, f"attn_{stat}")]
            assert sorted(steps) == [0, 1]
        assert "attn_next_L0" not in metrics  # GPT-2 is causal
        assert 0 < metrics["attn_sink_share"] < 1
        # the training metrics are still there, untouched
        assert "test_accuracy" in metrics


def test_comparison_goes_to_the_sweeps_parent_run(analysed):
    cwd, proc = analysed
    client = MlflowClient(tracking_uri(cwd))
    (parent,) = _runs(cwd, "sweep")
    (folder,) = client.list_artifacts(parent.info.run_id, "attention")
    scratch, pretrained = folder.path.removeprefix("attention/").split("_vs_")
    assert scratch.startswith("scratch-") and pretrained.startswith("pretrained-")
    names = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, folder.path)}
    assert {"comparison.md", "comparison.csv", "compare_first.png", "compare_entropy.png"} <= names
    report = _artifact(cwd, parent.info.run_id, f"{folder.path}/comparison.md").read_text()
    for section in ("## Conclusions", "## 1.", "## 2.", "## 3."):
        assert section in report
    assert "First-token (sink) share" in report
    merged = pd.read_csv(_artifact(cwd, parent.info.run_id, f"{folder.path}/comparison.csv"))
    assert (merged["first_diff"] == merged["first_b"] - merged["first_a"]).all()
    # b's heads are matched to a's before any difference: a permutation within each layer
    for _, layer in merged.groupby("layer"):
        assert sorted(layer.head_b) == sorted(layer["head"])
    assert "matched to those of" in report
    causal = {
        "compare_distributions.png",
        "top_words_overlap.csv",
        "attribution_agreement.csv",
        "report.html",
    }
    assert causal <= names
    assert "## 4. What matters, compared" in report and "Attributions agree" in report
    html = _artifact(cwd, parent.info.run_id, f"{folder.path}/report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html
    # the report is also printed, and no job run holds a comparison
    assert "## Conclusions" in proc.stdout
    for run in _runs(cwd, "job"):
        paths = {a.path for a in client.list_artifacts(run.info.run_id, "attention")}
        assert not any("_vs_" in p for p in paths)


def _validation_order(run) -> tuple:
    """How validation ranks a run, spelled out here (larger is better): the monitored score,
    then macro-F1, then the lower loss, then the earlier job."""
    m = run.data.metrics
    return (
        m["best_val_accuracy"],
        m["best_val_macro_f1"],
        -m["best_val_loss"],
        -int(run.data.tags["job_num"]),
    )


def test_attention_takes_the_best_seed_of_the_configurations_compare_compares(analysed):
    cwd, proc = analysed
    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab").experiment_id
    sweep = read_sweep(client, experiment, "latest")
    assert "seed" in sweep.swept
    keys = group_keys(sweep.swept)
    pair = choose_pair(make_groups(sweep.jobs, keys), keys, CompareConfig())
    analysed_runs = {r.info.run_id for r in _analysed_runs(cwd)}
    for choice in pair:
        runs = choice.group.finished
        assert len(runs) == 2  # two seeds
        best = max(runs, key=_validation_order)
        assert best.info.run_id in analysed_runs, choice.group.label
        assert best.info.run_name in proc.stdout
    assert len(analysed_runs) == 2


def test_own_text_with_a_model_id_writes_local_files_only(tmp_path: Path):
    proc = run_attention(
        [
            "model=tiny_gpt2",
            "init=scratch",
            "text=i feel so happy today",
            "head=1",
            "bertviz=false",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (tmp_path / "outputs" / "attention").glob("*/scratch-distilgpt2")
    assert (folder / "attention_L1_H1.png").read_bytes()[:8] == PNG
    stats = pd.read_csv(io.StringIO((folder / "head_stats.csv").read_text()))
    assert len(stats) == 4
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert "1 texts, 4 query tokens" in proc.stdout  # 5 tokens, from the second on


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run_id=0123456789abcdef"], "no MLflow store at"),
        (["model=tiny_gpt2", "init=scratch", "text=hi there", "layer=7"], "layer=7"),
        (["compare_run_id=abc"], "compare_run_id needs run_id"),
        (["model=tiny_gpt2", "init=scratch", "data.path=/no/such/dir"], "no such file"),
    ],
)
def test_mistakes_end_in_one_line(tmp_path: Path, args, message):
    proc = run_attention(args, tmp_path)
    assert message in one_error_line(proc), proc.stderr[-2000:]


def test_unknown_run_in_an_existing_store(analysed):
    cwd, _ = analysed
    proc = run_attention(["run_id=0123456789abcdef"], cwd)
    assert one_error_line(proc).startswith(
        "emotion_lab: error: run_id=0123456789abcdef: no such run"
    )


def test_help_names_the_entry_points(tmp_path: Path):
    proc = run_attention(["--help"], tmp_path)
    assert proc.returncode == 0
    assert "sweep_id=<id>" in proc.stdout and "compare_run_id" in proc.stdout
