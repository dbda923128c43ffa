"""hparams_search=optuna: the search sweeper (hydra_plugins/emotion_lab_search) on a real Optuna
study, with the tiny model: trials as MLflow runs, pruning after an epoch, a kill mid-trial and
resume=true, parallel trials through joblib, and the one-line errors."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.artifacts import download_artifacts
from optuna.trial import TrialState

from emotion_lab.search.study import open_storage
from emotion_lab.store import names
from tests.conftest import SMALL_DATA, one_error_line, run_cli, sweep_runs, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

# Two epochs, so a pruned trial trains fewer than a finished one; warmup and weight decay fixed
# (a key set on the command line leaves the search space), so the space is the learning rate.
TINY = [
    "model=tiny_gpt2",
    "init=scratch",
    "trainer.mixed_precision=no",
    *(o for o in SMALL_DATA if not o.startswith("trainer.epochs")),
    "trainer.epochs=2",
    "trainer.warmup_ratio=0.1",
    "optimizer.weight_decay=0.01",
]
SEARCH = ["-m", "hparams_search=optuna", *TINY]
# A learning rate that learns the label prior in an epoch, and one that cannot learn at all.
GOOD_LR, DEAD_LR = 3e-3, 1e-9


def _sweep_dir(cwd: Path) -> Path:
    dirs = sorted((cwd / "outputs" / "multirun").iterdir())
    return dirs[-1]


def _study(cwd: Path, storage: str) -> optuna.Study:
    parents, _ = sweep_runs(cwd)
    (parent,) = parents
    name = parent.data.tags[names.SEARCH_STUDY_TAG]
    return optuna.load_study(study_name=name, storage=open_storage(storage))


@pytest.fixture(scope="module")
def pruning(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two trials on sqlite, minimising val_loss: the good learning rate first (the pruner's
    one startup trial), then the dead one."""
    cwd = tmp_path_factory.mktemp("pruning")
    storage = f"sqlite:///{cwd / 'outputs' / 'optuna.db'}"
    proc = run_cli(
        [
            *SEARCH,
            "hydra.sweeper.n_trials=2",
            "trainer.monitor=val_loss",
            f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.enqueue=[{{lr: {GOOD_LR}}}, {{lr: {DEAD_LR}}}]",
            "hydra.sweeper.pruner.n_startup_trials=1",
            "hydra.sweeper.pruner.n_warmup_steps=0",
        ],
        cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, storage


def test_a_trial_that_cannot_learn_is_pruned_after_its_first_epoch(pruning: tuple[Path, str]):
    cwd, storage = pruning
    study = _study(cwd, storage)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # trainer.monitor=val_loss
    trials = study.get_trials()
    assert [t.params["lr"] for t in trials[:2]] == [GOOD_LR, DEAD_LR]
    good, dead = trials[0], trials[1]
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [1, 2]
    assert dead.state == TrialState.PRUNED and sorted(dead.intermediate_values) == [1]
    # It was worse than the median (the good trial's) at epoch 1: that is why it stopped.
    assert dead.intermediate_values[1] > good.intermediate_values[1]

    _, jobs = sweep_runs(cwd)
    by_number = {int(r.data.params["trial.number"]): r for r in jobs}
    assert sorted(by_number) == [0, 1]
    pruned, finished = by_number[1], by_number[0]
    assert pruned.info.status == "FINISHED"  # resume=true must never retrain it
    assert pruned.data.tags[names.PRUNED_TAG] == "1"
    assert pruned.data.metrics["epochs_run"] == 1 < finished.data.metrics["epochs_run"] == 2
    assert not any(k.startswith(("test_", names.BEST_PREFIX)) for k in pruned.data.metrics)
    assert names.PRUNED_TAG not in finished.data.tags and "test_accuracy" in finished.data.metrics
    # What each completed trial told the study is the validation loss its run logged.
    assert good.value == pytest.approx(finished.data.metrics["best_val_loss"])


def test_the_summary_and_results_list_pruned_trials_and_never_pick_one(pruning: tuple[Path, str]):
    cwd, storage = pruning
    study = _study(cwd, storage)
    found = yaml.safe_load((_sweep_dir(cwd) / "optimization_results.yaml").read_text())
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    assert found["best_trial"] == best.number and found["best_value"] == best.value
    assert found["direction"] == "minimize" and found["objective"] == "best_val_loss"
    assert found["trials"] == {"complete": 1, "pruned": 1}
    assert all(math.isclose(found["best_params"][k], v) for k, v in best.params.items())

    parents, _ = sweep_runs(cwd)
    summary = download_artifacts(
        run_id=parents[0].info.run_id,
        artifact_path=names.SWEEP_SUMMARY_ARTIFACT,
        tracking_uri=tracking_uri(cwd),
    )
    text = Path(summary).read_text()
    assert "| 1 | lr=1e-09 | pruned after epoch 1 |" in text
    assert f"Best trial: best_val_loss = {best.value:.4f}" in text
    assert parents[0].info.status == "FINISHED"  # pruned trials are not failures
    assert parents[0].data.metrics[names.SEARCH_BEST_VALUE] == pytest.approx(best.value)
    assert float(parents[0].data.tags[names.SEARCH_BEST_PARAM_TAG.format(key="lr")]) == (
        pytest.approx(best.params["lr"])
    )


def test_compare_draws_what_the_search_learned_and_logs_it(pruning: tuple[Path, str]):
    from mlflow.tracking import MlflowClient

    cwd, _ = pruning
    proc = run_cli([], cwd, module="emotion_lab.compare")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The compare table lists the pruned trials as pruned.
    assert proc.stdout.count("| PRUNED ") >= 1
    parents, _ = sweep_runs(cwd)
    client = MlflowClient(tracking_uri(cwd))
    logged = {Path(a.path).name for a in client.list_artifacts(parents[0].info.run_id, "compare")}
    wanted = {
        "search.md",
        "search_history.png",
        "search_importances.png",
        "search_importances.csv",
        "search_slices.png",
        "search_best_params.json",
        "search_expected_best.png",
    }
    assert wanted <= logged
    (folder,) = (cwd / "outputs" / "compare").iterdir()
    importances = (folder / "search_importances.csv").read_text().splitlines()
    assert importances[0] == "param,importance" and importances[1].startswith("lr,")
    best = yaml.safe_load((folder / "search_best_params.json").read_text())
    found = yaml.safe_load((_sweep_dir(cwd) / "optimization_results.yaml").read_text())
    assert best["trial"] == found["best_trial"] and best["params"] == found["best_params"]


def test_a_search_killed_mid_trial_resumes_it_in_its_own_run_and_trial(tmp_path: Path):
    """SIGKILL in the second trial's second epoch (6 steps an epoch, 2 epochs a trial), then
    resume=true: the study ends with exactly n_trials, the killed one continued, none drawn
    twice."""
    args = [*SEARCH, "hydra.sweeper.n_trials=3"]
    killed = run_cli(args, tmp_path, env={"EMOTION_LAB_FAULT": "train_step:21"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    storage = str(tmp_path / "outputs" / "optuna.journal")
    before = _study(tmp_path, storage).get_trials()
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert sorted(before[1].intermediate_values) == [1]

    resumed = run_cli([*args, "resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "3 finished, 0 failed" in resumed.stdout
    trials = _study(tmp_path, storage).get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert trials[1].params == before[1].params and sorted(trials[1].intermediate_values) == [1, 2]
    assert len({t.params["lr"] for t in trials}) == 3  # the resumed sampler drew a new value

    parents, jobs = sweep_runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(jobs) == 3 and {r.info.status for r in jobs} == {"FINISHED"}
    by_number = {int(r.data.params["trial.number"]): r for r in jobs}
    assert by_number[1].data.tags[names.RESUME_COUNT_TAG] == "1"  # its own run, continued
    assert names.RESUME_COUNT_TAG not in by_number[0].data.tags  # finished: not run again
    assert trials[1].value == pytest.approx(by_number[1].data.metrics["best_val_macro_f1"])
    # The resumed sweep's summary lists the trial of the first attempt too.
    found = yaml.safe_load((_sweep_dir(tmp_path) / "optimization_results.yaml").read_text())
    assert found["trials"] == {"complete": 3}


def test_parallel_trials_through_joblib_lose_no_trial_and_no_report(tmp_path: Path):
    args = [*SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]
    proc = run_cli([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is launching 2 jobs" in proc.stdout  # one round of two, in joblib's processes
    trials = _study(tmp_path, str(tmp_path / "outputs" / "optuna.journal")).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert [sorted(t.intermediate_values) for t in trials] == [[1, 2], [1, 2]]
    _, jobs = sweep_runs(tmp_path)
    assert sorted(int(r.data.params["trial.number"]) for r in jobs) == [0, 1]
    for run in jobs:
        trial = trials[int(run.data.params["trial.number"])]
        assert trial.value == pytest.approx(run.data.metrics["best_val_macro_f1"])
        assert float(run.data.params["lr"]) == trial.params["lr"]
    first, second = sorted(jobs, key=lambda r: r.info.start_time)
    assert second.info.start_time < first.info.end_time  # they ran at the same time


def test_a_search_where_no_trial_completes_ends_in_one_line(tmp_path: Path):
    # preflight=false: the trials start and fail, as trials failing for real do.
    search = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "preflight=false"]
    proc = run_cli([*search, *TINY, "data.path=/no/such"], tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    # Both trials ran (a failed trial does not stop the search) and each said why in one line.
    assert proc.stderr.count("emotion_lab: error: data.path=/no/such: no such file") == 2
    assert (
        "emotion_lab: error: no trial of the search completed (2 fail): see each trial's error"
        in proc.stderr
    )
    parents, jobs = sweep_runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FAILED"}


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["objective=test_accuracy"],
            "emotion_lab: error: objective='test_accuracy' is not valid: expected null or "
            "'best_val_macro_f1'",
        ),
        (
            ["hydra/sweeper/sampler=grid"],
            "emotion_lab: error: the grid sampler takes choice(...) or range(...) only, not "
            "lr=tag(log, interval(1e-5, 1e-3))",
        ),
    ],
    ids=["test-metric-objective", "grid-with-interval"],
)
def test_a_search_that_cannot_run_says_why_in_one_line(tmp_path: Path, args: list, line: str):
    proc = run_cli(["-m", "hparams_search=optuna", *TINY, *args], tmp_path)
    assert one_error_line(proc).startswith(line)
    assert "epoch 1" not in proc.stdout + proc.stderr  # before any training
