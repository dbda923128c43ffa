"""Crashes lose nothing: SIGKILL mid-epoch, then resume=true finishes the same MLflow run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import EMOTION, REPO, run_cli, tracking_uri

ARGS = [
    "model=tiny_gpt2",
    "init=scratch",
    f"data.path={EMOTION}",
    "data.max_train_samples=1600",
    "data.max_eval_samples=100",
    "trainer.epochs=2",
    "trainer.batch_size=8",
    "trainer.log_every_n_steps=5",
    "trainer.checkpoint_every_n_steps=10",
    "trainer.mixed_precision=no",
]
STEPS_PER_EPOCH = 1600 // 8


def _job_runs(cwd: Path) -> list:
    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab")
    return client.search_runs([experiment.experiment_id], "tags.`emotion_lab.role` = 'job'")


def _kill_mid_epoch(cwd: Path) -> None:
    """Start the job, wait for a mid-epoch checkpoint of epoch 1, SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emotion_lab", *ARGS],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            latest = list(cwd.glob("outputs/checkpoints/*/latest"))
            if (
                latest
                and "epoch-1-" in latest[0].read_text()
                and latest[0].read_text() >= "step-00000020"
            ):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
    pytest.fail("the job ended before a mid-epoch checkpoint could be interrupted")


def test_killed_job_resumes_into_the_same_run_with_the_same_result(tmp_path: Path):
    reference, job = tmp_path / "reference", tmp_path / "job"
    reference.mkdir()
    job.mkdir()
    done = run_cli(ARGS, reference)
    assert done.returncode == 0, done.stderr[-2000:]
    (expected,) = _job_runs(reference)

    _kill_mid_epoch(job)
    (killed,) = _job_runs(job)
    assert killed.info.status == "RUNNING"  # SIGKILL leaves no chance to close it
    assert "test_accuracy" not in killed.data.metrics

    resumed = run_cli([*ARGS, "resume=true"], job)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (run,) = _job_runs(job)  # the same run, not a second one
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["resume_count"] == "1"
    for key in ("test_accuracy", "test_macro_f1", "val_accuracy", "best_epoch"):
        assert run.data.metrics[key] == pytest.approx(expected.data.metrics[key], abs=1e-6), key
    assert run.data.metrics["test_loss"] == pytest.approx(
        expected.data.metrics["test_loss"], rel=1e-4
    )

    client = MlflowClient(tracking_uri(job))
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == list(range(5, 2 * STEPS_PER_EPOCH + 1, 5))  # none duplicated, none missing
    reference_loss = client.get_metric_history(expected.info.run_id, "train_loss")
    resumed_loss = client.get_metric_history(run.info.run_id, "train_loss")
    for a, b in zip(reference_loss, resumed_loss, strict=True):
        assert a.value == pytest.approx(b.value, rel=0.02)
    assert not list(job.glob("outputs/checkpoints/*/step-*"))  # cleaned up once finished


def test_resume_skips_finished_jobs(tmp_path: Path):
    args = [*ARGS[:3], "data.max_train_samples=48", "data.max_eval_samples=24", "trainer.epochs=1"]
    assert run_cli(args, tmp_path).returncode == 0
    again = run_cli([*args, "resume=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(_job_runs(tmp_path)) == 1
