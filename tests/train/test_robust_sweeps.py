"""One bad job does not sink a sweep; parallel jobs share one sqlite store safely."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL_DATA, run_cli, sweep_runs, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow


def test_diverging_job_fails_alone_and_the_summary_names_it(tmp_path: Path):
    proc = run_cli(
        [
            "-m",
            "model=tiny_gpt2",
            "init=scratch",
            "optimizer=sgd",
            "lr=0.01,1e12",
            "trainer.max_grad_norm=0",
            "trainer.mixed_precision=no",
            *SMALL_DATA,
        ],
        tmp_path,
    )
    assert proc.returncode != 0
    assert "1 finished, 1 failed" in proc.stdout
    failed_rows = [line for line in proc.stdout.splitlines() if "| FAILED |" in line]
    assert len(failed_rows) == 1 and "lr=1000000000000.0" in failed_rows[0]
    assert "training diverged" in failed_rows[0]
    runs = {r.data.params["lr"]: r for r in sweep_runs(tmp_path)[1]}
    assert runs["0.01"].info.status == "FINISHED"
    assert runs["1000000000000.0"].info.status == "FAILED"
    assert "training diverged" in runs["1000000000000.0"].data.tags["error"]


def test_four_parallel_jobs_on_one_sqlite_store(tmp_path: Path):
    proc = run_cli(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
            "model=tiny_gpt2",
            "init=scratch",
            "lr=1e-5,2e-5,3e-5,4e-5",
            *SMALL_DATA,
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "database is locked" not in proc.stderr
    runs = sweep_runs(tmp_path)[1]
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    client = MlflowClient(tracking_uri(tmp_path))
    for run in runs:
        assert {"test_accuracy", "val_accuracy", "train_loss"} <= set(run.data.metrics)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert steps == [2, 4, 6]  # 96 samples / batch 16 = 6 steps, logged every 2
