"""Cluster sweeps without a cluster: hydra/launcher=slurm_local is the SLURM launcher's config
run by submitit's local executor, which starts every job as its own process (on SLURM: its
own job). The sweep's parent run and summary live in the launching process and must still
see the jobs' runs and result files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from benchmarks.faults import histories
from emotion_lab.faults import ENV
from tests.conftest import SMALL_DATA, run_process, sweep_runs, tracking_uri
from tests.processes import Finished

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

LAUNCHER = ["hydra/launcher=slurm_local", "model=tiny_gpt2", "init=scratch"]
PRECISION = ["trainer.mixed_precision=no", "trainer.cpu=true"]


def launch_sweep(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, subprocess.CompletedProcess]:
    """``python -m emotion_lab -m ...``; returns the launching process's pid too."""
    cmd = [sys.executable, "-m", "emotion_lab", "-m", *LAUNCHER, *PRECISION, *SMALL_DATA, *args]
    return run_process(cmd, cwd, env=env)


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, Finished]:
    """A sweep of two uninterrupted jobs: its folder, the launching process's pid, its result."""
    cwd = tmp_path_factory.mktemp("two-jobs")
    launcher_pid, proc = launch_sweep(["lr=1e-3,3e-3"], cwd)
    return cwd, launcher_pid, proc


def test_each_job_runs_in_its_own_process_and_reports_to_the_sweep(
    two_jobs: tuple[Path, int, Finished],
):
    tmp_path, launcher_pid, proc = two_jobs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 finished, 0 failed" in proc.stdout
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").iterdir()

    # submitit's local job id is its job process's pid: two jobs, two processes, neither ours.
    job_dirs = [
        p for p in (sweep_dir / ".submitit").iterdir() if (p / f"{p.name}_0_result.pkl").exists()
    ]
    job_pids = {int(p.name) for p in job_dirs}
    assert len(job_pids) == 2 and launcher_pid not in job_pids

    parents, jobs = sweep_runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert {r.data.tags["sweep_id"] for r in jobs} == {sweep_dir.name}
    assert {float(r.data.params["lr"]) for r in jobs} == {1e-3, 3e-3}

    # The summary, written by the launching process, is built from the jobs' result files.
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/result.json")}
    assert set(results) == {"0", "1"}
    summary = Path(
        download_artifacts(
            run_id=parent.info.run_id,
            artifact_path="sweep_summary.md",
            tracking_uri=tracking_uri(tmp_path),
        )
    ).read_text()
    for num, result in results.items():
        assert result["status"] == "FINISHED"
        row = next(line for line in summary.splitlines() if line.startswith(f"| {num} |"))
        assert f"{result['metrics']['test_accuracy']:.4f}" in row
        run = next(r for r in jobs if r.data.tags["job_num"] == num)
        assert run.data.metrics["test_accuracy"] == pytest.approx(
            result["metrics"]["test_accuracy"]
        )


def test_tasks_per_node_trains_one_job_on_several_processes(tmp_path: Path):
    _, proc = launch_sweep(["hydra.launcher.tasks_per_node=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").iterdir()
    (job_dir,) = [p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
    assert sorted(p.name.split("_", 1)[1] for p in job_dir.glob("*_result.pkl")) == [
        "0_result.pkl",
        "1_result.pkl",
    ]
    _, jobs = sweep_runs(tmp_path)
    (run,) = jobs  # task 1 computed but did not log
    assert run.data.params["num_processes"] == "2"
    assert run.info.status == "FINISHED"
    assert len(list(sweep_dir.glob("*/result.json"))) == 1


def test_a_preempted_job_is_requeued_and_finishes_its_run(
    two_jobs: tuple[Path, int, Finished], tmp_path: Path
):
    """Submitit's preemption signal (USR2, as SLURM sends before a time limit or a preemption)
    at step 4 of 6: the job checkpoints that step, submitit requeues it, and the requeued job
    reopens its own run, by itself, and ends it with the uninterrupted job's numbers."""
    _, proc = launch_sweep(["lr=1e-3"], tmp_path, env={ENV: "train_step:4:USR2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 finished, 0 failed" in proc.stdout
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").iterdir()
    (log,) = sweep_dir.glob(".submitit/*/*_0_log.out")
    assert "Requeued job" in log.read_text()
    (parent,), (run,) = sweep_runs(tmp_path)
    assert parent.info.status == run.info.status == "FINISHED"
    assert run.data.tags["resume_count"] == "1"
    assert run.data.tags["emotion_lab.stopped_by"] == "SIGUSR2 at step 4"

    reference = next(r for r in sweep_runs(two_jobs[0])[1] if float(r.data.params["lr"]) == 1e-3)
    got = histories(MlflowClient(tracking_uri(tmp_path)), run)
    want = histories(MlflowClient(tracking_uri(two_jobs[0])), reference)
    assert got.keys() == want.keys()
    for key in sorted(want):
        assert got[key] == want[key], key


def test_a_job_out_of_requeues_fails_in_one_line(tmp_path: Path):
    # timeout_min=1: submitit counts the signal as the time limit's; max_num_timeout=0: no
    # requeue for a time limit, so the job stops, keeps its checkpoint and fails.
    args = ["hydra.launcher.timeout_min=1", "hydra.launcher.max_num_timeout=0"]
    _, proc = launch_sweep(args, tmp_path, env={ENV: "train_step:2:USR2"})
    assert proc.returncode == 1
    assert "0 finished, 1 failed" in proc.stdout
    parents, (run,) = sweep_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FAILED"]
    assert run.info.status == "FAILED"
    line = (
        "stopped by SIGUSR2 at step 2 and not requeued: timed-out too many times "
        "(hydra.launcher.max_num_timeout=0); the checkpoint is kept: rerun with resume=true"
    )
    assert run.data.tags["error"] == line
    assert line in proc.stdout  # the sweep's summary
    assert (
        next(tmp_path.glob("outputs/checkpoints/*/latest")).read_text().startswith("step-00000002-")
    )
