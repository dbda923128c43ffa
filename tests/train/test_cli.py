"""End to end as a user runs it: `python -m emotion_lab` in a subprocess, MLflow read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from emotion_lab.config import DataConfig, TrainerConfig
from emotion_lab.data import load_splits
from emotion_lab.train.speed import hardware_kind, resolve_speed
from tests.conftest import EMOTION, SMALL_DATA, one_error_line, run_cli, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow


def _runs(cwd: Path, query: str = "") -> list:
    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], filter_string=query)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_cli(
        [
            "-m",
            "init=scratch,pretrained",
            "lr=1e-5,5e-5",
            f"model.name_or_path={tiny_checkpoint}",
            "trainer.mixed_precision=no",
            "trainer.checkpoint_every_n_steps=2",
            *SMALL_DATA,
        ],
        cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 finished, 0 failed" in proc.stdout
    return cwd


def test_sweep_logs_four_comparable_runs(sweep: Path):
    runs = _runs(sweep, "tags.`emotion_lab.role` != 'sweep'")
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    combos = {(r.data.params["init"], float(r.data.params["lr"])) for r in runs}
    assert combos == {
        ("scratch", 1e-5),
        ("scratch", 5e-5),
        ("pretrained", 1e-5),
        ("pretrained", 5e-5),
    }
    assert len({r.data.tags["sweep_id"] for r in runs}) == 1
    for r in runs:
        init, lr = r.data.params["init"], float(r.data.params["lr"])
        assert r.info.run_name.startswith(f"{init}-lr{lr:g}")
        # params are the flattened resolved config
        assert r.data.params["model.name_or_path"].endswith("tiny-gpt20")
        assert r.data.params["data.max_train_samples"] == "96"
        assert r.data.params["optimizer.betas"] == "[0.9, 0.999]"
        # What trainer.*=auto chose on this machine's CPU kind (emotion_lab.train.speed).
        kind = hardware_kind("cpu")
        chosen = resolve_speed(TrainerConfig(), kind, num_processes=1).params()
        assert {k: r.data.params[k] for k in chosen} == chosen
        assert r.data.params["trainer.dropout_masks"] == "auto"
        for key in (
            "val_accuracy",
            "val_macro_f1",
            "val_loss",
            "test_accuracy",
            "test_macro_f1",
            "best_epoch",
            "train_samples_per_s",
        ):
            assert key in r.data.metrics, key
        assert 0 <= r.data.metrics["test_accuracy"] <= 1
        # Throughput covers the whole epoch, across its mid-epoch checkpoints (every 2 steps).
        m = r.data.metrics
        assert m["train_samples_per_s"] * m["train_seconds"] == pytest.approx(96, rel=1e-6)


def test_sweep_metrics_have_step_history(sweep: Path):
    client = MlflowClient(tracking_uri(sweep))
    run = _runs(sweep, "params.init = 'scratch'")[0]
    train_loss = client.get_metric_history(run.info.run_id, "train_loss")
    steps = [m.step for m in train_loss]
    assert steps == sorted(set(steps)) and len(steps) == 3  # 6 steps, logged every 2
    assert len(client.get_metric_history(run.info.run_id, "lr")) == 3


def test_sweep_runs_are_grouped_under_a_parent_run(sweep: Path):
    parents = _runs(sweep, "tags.`emotion_lab.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = _runs(sweep, f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert len(children) == 4
    summary = download_artifacts(
        run_id=parents[0].info.run_id,
        artifact_path="sweep_summary.md",
        tracking_uri=tracking_uri(sweep),
    )
    assert Path(summary).read_text().count("| FINISHED |") == 4


def test_sweep_artifacts_and_loadable_model(sweep: Path):
    client = MlflowClient(tracking_uri(sweep))
    run = _runs(sweep, "params.init = 'pretrained' and params.lr = '5e-05'")[0]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "config.yaml",
        "confusion_matrix.png",
        "classification_report.txt",
        "classification_report.json",
        "model",
    } <= names
    png = download_artifacts(
        run_id=run.info.run_id,
        artifact_path="confusion_matrix.png",
        tracking_uri=tracking_uri(sweep),
    )
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(sweep.glob("outputs/multirun/*/*/confusion_matrix.png"))) == 4

    # The logged best model reproduces the logged test accuracy.
    model_dir = download_artifacts(
        run_id=run.info.run_id, artifact_path="model", tracking_uri=tracking_uri(sweep)
    )
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # The job's test rows: the seeded, stratified sample of data.max_eval_samples=48.
    test = load_splits(DataConfig(path=str(EMOTION), max_eval_samples=48), seed=42).test
    with torch.no_grad():
        batch = tokenizer(list(test["text"]), padding=True, return_tensors="pt")
        pred = model(**batch).logits.argmax(-1)
    accuracy = (pred == torch.tensor(list(test["label"]))).float().mean().item()
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
    assert model.config.id2label[0] == "sadness"


def test_minilm_pretrained_run_on_real_weights(tmp_path: Path):
    proc = run_cli(["model=minilm", "init=pretrained", "lr=1e-4", *SMALL_DATA], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = _runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert run.data.params["init"] == "pretrained"
    # the checkpoint (encoder + pooler) plus a new 6-way head on its 384-wide output
    assert run.data.params["num_parameters"] == str(22_713_216 + 384 * 6 + 6)
    assert "test_accuracy" in run.data.metrics


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["init=pretrained"], "cannot load the pretrained weights of 'distilgpt2'"),
        (["data.path=/no/such/dir"], "data.path=/no/such/dir: no such file or directory"),
    ],
)
def test_failures_are_one_line_and_leave_no_running_run(tmp_path: Path, overrides, message):
    data = [
        o for o in SMALL_DATA if not (o.startswith("data.path") and "data.path" in overrides[0])
    ]
    # preflight=false: the failure happens mid-job, where it must leave a FAILED run.
    proc = run_cli([*data, *overrides, "preflight=false"], tmp_path)
    assert message in one_error_line(proc)
    if overrides[0].startswith("data."):
        # The data is read before the store is opened: bad data leaves nothing in it.
        assert not (tmp_path / "outputs" / "mlflow.db").exists()
        return
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"
    assert message in run.data.tags["error"]


def test_config_typo_is_one_clear_error(tmp_path: Path):
    proc = run_cli(["trainer.epoch=3"], tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "trainer.epoch" in proc.stderr
