"""A checkpoint write that runs out of space ends the job with one line; the last good
checkpoint stays, and resume=true finishes once there is room again.

The job's file-size limit (RLIMIT_FSIZE, what `ulimit -f` sets) stands in for a full disk: the
write fails in the kernel just the same, and no mount is needed.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from emotion_lab.faults import ENV
from tests.conftest import REPO, SMALL_DATA, one_error_line, run_cli, sweep_runs, tracking_uri

# 6 steps, a checkpoint every 2. The tiny model's weights take 13 MB, its Adam state 26 MB.
ARGS = [
    "model=tiny_gpt2",
    "init=scratch",
    "trainer.mixed_precision=no",
    "trainer.checkpoint_every_n_steps=2",
    *SMALL_DATA,
]
LIMIT_MB = 20


def _run_limited(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_MB * 2**20, LIMIT_MB * 2**20))

    return subprocess.run(
        [sys.executable, "-m", "emotion_lab", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit,
    )


@pytest.mark.slow
def test_a_full_disk_ends_the_job_in_one_line_and_resume_finishes(tmp_path: Path):
    os.environ[ENV] = "train_step:3"
    try:
        killed = run_cli(ARGS, tmp_path)
    finally:
        del os.environ[ENV]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (checkpoints,) = tmp_path.glob("outputs/checkpoints/*")
    good = "step-00000002-epoch-1-batch-2"
    assert (checkpoints / "latest").read_text() == good

    full = _run_limited([*ARGS, "resume=true"], tmp_path)
    assert one_error_line(full) == (
        f"emotion_lab: error: cannot write a checkpoint to {checkpoints}: a file outgrew the "
        f"file-size limit (ulimit -f) of {LIMIT_MB} MB. To go on, raise the limit (ulimit -f "
        "unlimited; a file needs about 26 MB), then rerun with resume=true: the last good "
        f"checkpoint ({good}) is kept."
    )
    # The failed write left nothing behind, and the good checkpoint is whole.
    assert {p.name for p in checkpoints.iterdir()} == {"latest", good}
    (run,) = sweep_runs(tmp_path)[1]
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("DiskFull: cannot write a checkpoint")

    resumed = run_cli([*ARGS, "resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (run,) = sweep_runs(tmp_path)[1]
    assert run.info.status == "FINISHED" and run.data.tags["resume_count"] == "2"
    steps = MlflowClient(tracking_uri(tmp_path)).get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in steps] == [2, 4, 6]
    assert not checkpoints.exists()
