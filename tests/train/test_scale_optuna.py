"""hparams_search=optuna: Hydra's Optuna sweeper searches lr, warmup, weight decay and batch
size; each trial is one job returning its best validation macro-F1, one MLflow run in the
sweep's group."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from mlflow.artifacts import download_artifacts

from tests.conftest import SMALL_DATA, one_error_line, run_cli, sweep_runs, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

# Everything but the batch size, which the search picks.
DATA = [o for o in SMALL_DATA if not o.startswith("trainer.batch_size")]
TINY = ["model=tiny_gpt2", "init=scratch", "trainer.mixed_precision=no", *DATA]
TRIALS = 3


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("optuna")
    proc = run_cli(["-m", "hparams_search=optuna", f"hydra.sweeper.n_trials={TRIALS}", *TINY], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{TRIALS} finished, 0 failed" in proc.stdout
    return cwd


def test_every_trial_is_a_run_in_the_sweep_group(search: Path):
    parents, jobs = sweep_runs(search)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(jobs) == TRIALS
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    assert len({r.data.tags["sweep_id"] for r in jobs}) == 1
    assert sorted(r.data.tags["job_num"] for r in jobs) == [str(i) for i in range(TRIALS)]


def test_trials_sample_the_search_space(search: Path):
    _, jobs = sweep_runs(search)
    for run in jobs:
        p = run.data.params
        assert 1e-5 <= float(p["lr"]) <= 1e-3
        assert 0.0 <= float(p["trainer.warmup_ratio"]) <= 0.2
        assert 0.0 <= float(p["optimizer.weight_decay"]) <= 0.1
        assert p["trainer.batch_size"] in {"16", "32", "64"}
        assert p["objective"] == "best_val_macro_f1" and p["trainer.monitor"] == "val_macro_f1"
    assert len({r.data.params["lr"] for r in jobs}) == TRIALS


def test_the_search_maximised_the_returned_validation_macro_f1(search: Path):
    _, jobs = sweep_runs(search)
    (sweep_dir,) = (search / "outputs" / "multirun").iterdir()
    found = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    # What each job returned to Optuna is what it logged as its best validation macro-F1.
    best_run = max(jobs, key=lambda r: r.data.metrics["best_val_macro_f1"])
    assert found["best_value"] == pytest.approx(best_run.data.metrics["best_val_macro_f1"])
    for key, value in found["best_params"].items():
        assert math.isclose(float(best_run.data.params[key]), float(value), rel_tol=1e-9), key

    parents, _ = sweep_runs(search)
    summary = download_artifacts(
        run_id=parents[0].info.run_id,
        artifact_path="sweep_summary.md",
        tracking_uri=tracking_uri(search),
    )
    text = Path(summary).read_text()
    assert f"Best trial: best_val_macro_f1 = {found['best_value']:.4f}" in text
    assert "| best_val_macro_f1 |" in text.splitlines()[0]


def test_failed_trials_are_recorded_and_fail_the_sweep(tmp_path: Path):
    # preflight=false: the trials start and fail, as trials failing for real do.
    search = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "preflight=false"]
    proc = run_cli([*search, *TINY, "data.path=/no/such"], tmp_path)
    assert proc.returncode != 0
    # Both trials ran (a failed trial does not stop the search) and each said why in one line.
    assert proc.stderr.count("emotion_lab: error: data.path=/no/such: no such file") == 2
    assert proc.stdout.count("Failed experiment: data.path=/no/such") == 2  # Optuna's log
    parents, jobs = sweep_runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FAILED"}


def test_objective_must_be_a_validation_score(tmp_path: Path):
    proc = run_cli(["objective=test_accuracy", *TINY], tmp_path)
    assert one_error_line(proc).startswith(
        "emotion_lab: error: objective='test_accuracy' is not valid: expected null or "
        "'best_val_accuracy'"
    )
