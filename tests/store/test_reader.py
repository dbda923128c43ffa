"""The one best-run rule: validation picks, the test set never does; ties are broken as stated."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from emotion_lab.attention.runs import sweep_pair
from emotion_lab.store import names
from emotion_lab.store.reader import best_run, get_run

SWEEP = "s1"


@pytest.fixture
def client(tmp_path: Path) -> MlflowClient:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment("emotion_lab", artifact_location=(tmp_path / "a").as_uri())
    return client


def _job(client: MlflowClient, num: int, init: str, metrics: dict[str, float], monitor: str):
    """A finished job run as training logs it: tags, the monitor param, final metrics."""
    experiment = client.get_experiment_by_name("emotion_lab").experiment_id
    run = client.create_run(
        experiment,
        run_name=f"job{num}",
        tags={
            names.ROLE_TAG: names.ROLE_JOB,
            names.SWEEP_TAG: SWEEP,
            names.JOB_NUM_TAG: str(num),
        },
    )
    run_id = run.info.run_id
    client.log_param(run_id, names.INIT_PARAM, init)
    client.log_param(run_id, names.MONITOR_PARAM, monitor)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")
    return get_run(client, run_id)


def test_validation_picks_the_best_run_not_the_test_set(client):
    # Job 0 has the better test accuracy, job 1 the better validation accuracy.
    a = _job(
        client, 0, "scratch", {"best_val_accuracy": 0.70, "test_accuracy": 0.90}, "val_accuracy"
    )
    b = _job(
        client, 1, "scratch", {"best_val_accuracy": 0.80, "test_accuracy": 0.60}, "val_accuracy"
    )
    assert best_run([a, b]).info.run_id == b.info.run_id


def test_val_loss_is_minimised_and_ties_fall_to_macro_f1_then_job_order(client):
    low = _job(client, 0, "scratch", {"best_val_loss": 0.3, "best_val_macro_f1": 0.5}, "val_loss")
    high = _job(client, 1, "scratch", {"best_val_loss": 0.4, "best_val_macro_f1": 0.9}, "val_loss")
    assert best_run([low, high]).info.run_id == low.info.run_id

    tie = {"best_val_accuracy": 0.8, "best_val_loss": 0.5}
    first = _job(client, 2, "scratch", {**tie, "best_val_macro_f1": 0.6}, "val_accuracy")
    better_f1 = _job(client, 3, "scratch", {**tie, "best_val_macro_f1": 0.7}, "val_accuracy")
    same = _job(client, 4, "scratch", {**tie, "best_val_macro_f1": 0.7}, "val_accuracy")
    assert best_run([first, better_f1, same]).info.run_id == better_f1.info.run_id


def test_attention_compares_the_runs_validation_prefers(client):
    _job(client, 0, "scratch", {"best_val_accuracy": 0.5, "test_accuracy": 0.9}, "val_accuracy")
    s = _job(client, 1, "scratch", {"best_val_accuracy": 0.6, "test_accuracy": 0.4}, "val_accuracy")
    _job(client, 2, "pretrained", {"best_val_accuracy": 0.7, "test_accuracy": 0.95}, "val_accuracy")
    p = _job(
        client, 3, "pretrained", {"best_val_accuracy": 0.9, "test_accuracy": 0.5}, "val_accuracy"
    )
    (scratch, pretrained), why = sweep_pair(client, "emotion_lab", SWEEP)
    assert (scratch.run_id, pretrained.run_id) == (s.info.run_id, p.info.run_id)
    assert "validation" in why and "job1" in why and "job3" in why
