"""Crashes change nothing: a job SIGKILLed mid-epoch, resumed, SIGKILLed again right after an
epoch-end checkpoint and resumed again logs exactly the numbers of an uninterrupted run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.faults import Histories, histories
from emotion_lab.faults import ENV
from tests.conftest import EMOTION, run_cli, sweep_runs, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

# 20 steps an epoch. Checkpoints every 7 steps (7, 14, 21, ...) and at epoch ends (20, 40);
# the loss is logged every 3 steps, so a resume from step 14 cuts a logging window.
ARGS = [
    "model=tiny_gpt2",
    "init=scratch",
    f"data.path={EMOTION}",
    "data.max_train_samples=160",
    "data.max_eval_samples=48",
    "trainer.epochs=2",
    "trainer.batch_size=8",
    "trainer.log_every_n_steps=3",
    "trainer.checkpoint_every_n_steps=7",
    "trainer.mixed_precision=no",
]
STEPS = 40


def _killed_at(cwd: Path, fault: str, *extra: str) -> None:
    os.environ[ENV] = fault
    try:
        proc = run_cli([*ARGS, *extra], cwd)
    finally:
        del os.environ[ENV]
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Histories:
    """Every metric history of the uninterrupted job."""
    cwd = tmp_path_factory.mktemp("reference")
    done = run_cli(ARGS, cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    (expected,) = sweep_runs(cwd)[1]
    return histories(MlflowClient(tracking_uri(cwd)), expected)


def _assert_same_numbers(job: Path, reference: Histories) -> None:
    """The job's one run FINISHED, every logged value equal to the uninterrupted run's."""
    (run,) = sweep_runs(job)[1]
    assert run.info.status == "FINISHED"
    got = histories(MlflowClient(tracking_uri(job)), run)
    assert [step for step, _ in got["train_loss"]] == list(range(3, STEPS + 1, 3))
    assert got.keys() == reference.keys()
    for key in sorted(reference):  # every logged value, bit for bit: train, validation, test
        assert got[key] == reference[key], key
    assert not list(job.glob("outputs/checkpoints/*"))  # cleaned up once finished


@pytest.mark.slow
def test_killed_and_resumed_job_logs_exactly_the_uninterrupted_numbers(
    reference: Histories, tmp_path: Path
):
    job = tmp_path / "job"
    job.mkdir()

    # Killed at step 17 of epoch 1: the resume starts from the mid-epoch checkpoint of step 14.
    _killed_at(job, "train_step:17")
    (killed,) = sweep_runs(job)[1]
    assert killed.info.status == "RUNNING"  # SIGKILL leaves no chance to close it
    assert "test_accuracy" not in killed.data.metrics
    # Killed at its 7th step (step 21, before that step's checkpoint): the next resume starts
    # from the checkpoint written at the end of epoch 1 (step 20).
    _killed_at(job, "train_step:7", "resume=true")
    latest = next(job.glob("outputs/checkpoints/*/latest")).read_text()
    assert latest == "step-00000020-epoch-2-batch-0"

    resumed = run_cli([*ARGS, "resume=true"], job)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (run,) = sweep_runs(job)[1]  # the same run, not a second one
    assert run.info.run_id == killed.info.run_id
    assert run.data.tags["resume_count"] == "2"
    _assert_same_numbers(job, reference)


@pytest.mark.slow
def test_sigterm_mid_epoch_stops_at_that_step_and_resumes_to_the_same_numbers(
    reference: Histories, tmp_path: Path
):
    # SIGTERM during step 17: that step is finished and checkpointed (the last periodic
    # checkpoint was at step 14), the run closed KILLED, one line printed.
    os.environ[ENV] = "train_step:17:TERM"
    try:
        stopped = run_cli(ARGS, tmp_path)
    finally:
        del os.environ[ENV]
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    said = [line for line in stopped.stderr.splitlines() if "stopped by" in line]
    line = "emotion_lab: stopped by SIGTERM at step 17 (checkpoint kept): rerun with resume=true"
    assert said == [line]
    assert "Traceback" not in stopped.stderr
    (run,) = sweep_runs(tmp_path)[1]
    assert run.info.status == "KILLED"
    assert run.data.tags["emotion_lab.stopped_by"] == "SIGTERM at step 17"
    latest = next(tmp_path.glob("outputs/checkpoints/*/latest")).read_text()
    assert latest == "step-00000017-epoch-1-batch-17"

    resumed = run_cli([*ARGS, "resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sweep_runs(tmp_path)[1][0].info.run_id == run.info.run_id
    _assert_same_numbers(tmp_path, reference)


@pytest.mark.slow
def test_resume_skips_finished_jobs(tmp_path: Path):
    args = [*ARGS[:3], "data.max_train_samples=48", "data.max_eval_samples=24", "trainer.epochs=1"]
    assert run_cli(args, tmp_path).returncode == 0
    again = run_cli([*args, "resume=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(sweep_runs(tmp_path)[1]) == 1


@pytest.mark.slow
def test_resume_refuses_a_run_whose_data_file_changed_unless_told(tmp_path: Path):
    """Killed mid-epoch, then its CSV is edited: resume=true refuses in one line, before any
    training; resume_changed_data=true continues the run on the new rows (both digests kept)
    and, a single job, ends with its short block."""
    import pandas as pd

    rows = pd.read_parquet(next(EMOTION.glob("split/train-*.parquet"))).head(150)
    data = tmp_path / "tweets.csv"
    rows.to_csv(data, index=False)
    args = [*ARGS[:2], f"data.path={data}", "trainer.epochs=1", "trainer.batch_size=8"]
    args += ["trainer.mixed_precision=no", "trainer.checkpoint_every_n_steps=2"]
    killed_proc = run_cli(args, tmp_path, env={ENV: "train_step:4"})
    assert killed_proc.returncode == -signal.SIGKILL, killed_proc.stderr[-2000:]
    (killed,) = sweep_runs(tmp_path)[1]
    assert killed.info.status == "RUNNING"

    rows.loc[0, "text"] = "i feel edited"
    rows.to_csv(data, index=False)
    refused = run_cli([*args, "resume=true"], tmp_path)
    assert refused.returncode == 1
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("emotion_lab: error:")]
    assert f"data of run {killed.info.run_id} changed since it started" in line
    assert line.endswith("set resume_changed_data=true to continue on the new rows.")
    assert "epoch 1" not in refused.stdout

    resumed = run_cli([*args, "resume=true", "resume_changed_data=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (run,) = sweep_runs(tmp_path)[1]
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    training = {
        i.dataset.digest
        for i in run.inputs.dataset_inputs
        if any(t.value == "training" for t in i.tags)
    }
    assert len(training) == 2
    # A single job ends with one short block: the kept epoch's scores, the run, its UI link.
    m = run.data.metrics
    assert resumed.stdout.strip().splitlines()[-3:] == [
        f"Job finished (epoch {m['best_epoch']:.0f}, chosen on validation): test_accuracy "
        f"{m['test_accuracy']:.4f}, test_macro_f1 {m['test_macro_f1']:.4f}",
        f"Run {run.info.run_name} ({run.info.run_id})",
        f"In the MLflow UI: http://127.0.0.1:5000/#/experiments/"
        f"{run.info.experiment_id}/runs/{run.info.run_id}",
    ]
