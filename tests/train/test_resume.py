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

from tests.conftest import EMOTION, REPO, run_cli, sweep_runs, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

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
    (expected,) = sweep_runs(reference)[1]

    _kill_mid_epoch(job)
    (killed,) = sweep_runs(job)[1]
    assert killed.info.status == "RUNNING"  # SIGKILL leaves no chance to close it
    assert "test_accuracy" not in killed.data.metrics

    resumed = run_cli([*ARGS, "resume=true"], job)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (run,) = sweep_runs(job)[1]  # the same run, not a second one
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["resume_count"] == "1"
    # Same seed, same result within tolerance: the resumed run is not bit-exact (losses ~1%
    # apart seen), so at most one of 100 eval texts may flip and losses may differ by 2%.
    for key in ("test_accuracy", "test_macro_f1", "val_accuracy"):
        assert run.data.metrics[key] == pytest.approx(expected.data.metrics[key], abs=0.011), key
    for key in ("test_loss", "val_loss"):
        assert run.data.metrics[key] == pytest.approx(expected.data.metrics[key], rel=0.02), key

    client = MlflowClient(tracking_uri(job))
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == list(range(5, 2 * STEPS_PER_EPOCH + 1, 5))  # none duplicated, none missing
    # Steps logged before the kill are the reference's own values, not relogged after resume.
    reference_client = MlflowClient(tracking_uri(reference))
    reference_loss = reference_client.get_metric_history(expected.info.run_id, "train_loss")
    resumed_loss = client.get_metric_history(run.info.run_id, "train_loss")
    for a, b in zip(reference_loss[:4], resumed_loss[:4], strict=True):
        assert (a.step, a.value) == pytest.approx((b.step, b.value), rel=1e-5)
    assert not list(job.glob("outputs/checkpoints/*/step-*"))  # cleaned up once finished


def test_resume_skips_finished_jobs(tmp_path: Path):
    args = [*ARGS[:3], "data.max_train_samples=48", "data.max_eval_samples=24", "trainer.epochs=1"]
    assert run_cli(args, tmp_path).returncode == 0
    again = run_cli([*args, "resume=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(sweep_runs(tmp_path)[1]) == 1
