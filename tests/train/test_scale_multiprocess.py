"""Two processes on CPU (gloo) through `accelerate launch`, as on a multi-GPU machine.

Training on 2 processes is not the same optimisation as on 1 (each process sees half the
batches), so the honest comparison is of evaluation: the weights the 2-process job trained and
logged are evaluated again in this single process, through the same data and eval code. The
eval sets have 50 samples in batches of 8: 7 batches, split 4 + 3 across the processes, so
Accelerate pads the second process with duplicates that the gathered metrics must drop.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState, GradientState
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient
from transformers import AutoModelForSequenceClassification

from benchmarks.faults import histories
from emotion_lab.config import DataConfig, TrainerConfig
from emotion_lab.data import load_splits, make_loaders, tokenize_splits
from emotion_lab.faults import ENV
from emotion_lab.modeling import load_tokenizer
from emotion_lab.train.job import make_accelerator
from emotion_lab.train.loop import predict
from emotion_lab.train.metrics import EvalResult, evaluate_logits
from tests.conftest import EMOTION, run_process, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

EVAL_SAMPLES, EVAL_BATCH = 50, 8  # 6 full batches and one of 2
DATA = [
    f"data.path={EMOTION}",
    "data.max_train_samples=96",
    f"data.max_eval_samples={EVAL_SAMPLES}",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    f"trainer.eval_batch_size={EVAL_BATCH}",
    "trainer.log_every_n_steps=1",
    "trainer.cpu=true",
    "trainer.mixed_precision=no",
]


def accelerate_launch(
    args: list[str], cwd: Path, processes: int, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes N -m emotion_lab ...``; with
    ``trainer.cpu=true`` and no GPU, Accelerate runs the processes on CPU over gloo."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", str(processes), "--num_machines", "1", "--main_process_port"]
    launch += ["0", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "emotion_lab"]
    return run_process([*launch, *args], cwd, env=env)[1]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """Two jobs, one after the other in the same 2 processes: Accelerate's state is rebuilt
    per job while the process group lives on."""
    cwd = tmp_path_factory.mktemp("two-processes")
    proc = accelerate_launch(
        ["-m", "lr=1e-3,3e-3", f"model.name_or_path={tiny_checkpoint}", *DATA], cwd, processes=2
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("2 finished, 0 failed") == 1  # one summary: rank 0's
    return cwd


def _job_runs(cwd: Path) -> list:
    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab")
    return client.search_runs([experiment.experiment_id], order_by=["params.lr"])


def test_only_the_main_process_logs_and_writes(sweep: Path):
    runs = _job_runs(sweep)
    parents = [r for r in runs if r.data.tags["emotion_lab.role"] == "sweep"]
    jobs = [r for r in runs if r.data.tags["emotion_lab.role"] == "job"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(jobs) == 2
    assert {r.info.status for r in jobs} == {"FINISHED"}
    assert {r.data.params["num_processes"] for r in jobs} == {"2"}
    # DDP keeps its own gradient layout: no reused embedding buffer with two processes.
    assert {r.data.params["speed.embedding_grad"] for r in jobs} == {"dense"}
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    # Both ranks composed the same sweep dir; nothing else was created.
    (sweep_dir,) = (sweep / "outputs" / "multirun").iterdir()
    assert not (sweep / "outputs" / "runs").exists()
    assert sorted(p.name for p in sweep_dir.glob("*/result.json")) == ["result.json"] * 2
    assert {p.parent.name for p in sweep_dir.glob("*/confusion_matrix.png")} == {"0", "1"}
    assert json.loads((sweep_dir / "sweep.json").read_text())["parent_run_id"] == (
        parents[0].info.run_id
    )


def _evaluate_in_one_process(model_dir: str) -> tuple[EvalResult, EvalResult]:
    tokenizer = load_tokenizer(model_dir)
    data = DataConfig(path=str(EMOTION), max_train_samples=96, max_eval_samples=EVAL_SAMPLES)
    splits = tokenize_splits(load_splits(data, seed=42), tokenizer, max_length=128)
    _, val_loader, test_loader = make_loaders(
        splits, tokenizer, TrainerConfig(batch_size=16, eval_batch_size=EVAL_BATCH), data, seed=42
    )
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    accelerator = make_accelerator(TrainerConfig(cpu=True, mixed_precision="no"))
    try:
        assert accelerator.num_processes == 1
        model, val_loader, test_loader = accelerator.prepare(model, val_loader, test_loader)
        labels = splits.label_names
        return (
            evaluate_logits(*predict(accelerator, model, val_loader, "validation"), labels),
            evaluate_logits(*predict(accelerator, model, test_loader, "test"), labels),
        )
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def test_two_process_eval_equals_one_process_eval_of_the_same_weights(sweep: Path):
    uri = tracking_uri(sweep)
    for run in [r for r in _job_runs(sweep) if r.data.tags["emotion_lab.role"] == "job"]:
        report = json.loads(
            Path(
                download_artifacts(
                    run_id=run.info.run_id,
                    artifact_path="classification_report.json",
                    tracking_uri=uri,
                )
            ).read_text()
        )
        # Each sample counted once: not 56 (7 batches of 8 padded to 8 per process).
        assert report["macro avg"]["support"] == EVAL_SAMPLES
        model_dir = download_artifacts(
            run_id=run.info.run_id, artifact_path="model", tracking_uri=uri
        )
        val, test = _evaluate_in_one_process(model_dir)
        assert val.n == test.n == EVAL_SAMPLES
        logged = run.data.metrics
        assert test.accuracy == pytest.approx(logged["test_accuracy"], abs=1e-9)
        assert test.macro_f1 == pytest.approx(logged["test_macro_f1"], abs=1e-9)
        assert test.loss == pytest.approx(logged["test_loss"], rel=1e-5)
        # One epoch: the logged model is the epoch that was validated.
        assert val.accuracy == pytest.approx(logged["val_accuracy"], abs=1e-9)
        assert val.macro_f1 == pytest.approx(logged["val_macro_f1"], abs=1e-9)
        assert report["macro avg"]["f1-score"] == pytest.approx(test.macro_f1, abs=1e-9)


def test_rank_0_owns_the_search_and_the_other_ranks_follow_its_trials(tmp_path: Path):
    """Rank 0 asks the study for each trial and sends it to the other rank, which launches the
    same job: the ranks train the same configs in lockstep, and the study holds each trial once,
    with one report per epoch."""
    import optuna

    from emotion_lab.search.study import open_storage

    search = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3"]
    search += ["hydra.sweeper.sampler.n_startup_trials=1"]  # trials 2 and 3 come from TPE
    data = [o for o in DATA if not o.startswith("trainer.batch_size")]
    proc = accelerate_launch([*search, "model=tiny_gpt2", "init=scratch", *data], tmp_path, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    launched: dict[str, list[str]] = {}
    for num, overrides in re.findall(r"\t#(\d+) : (.*)", proc.stdout):
        launched.setdefault(num, []).append(overrides)
    assert sorted(launched) == ["0", "1", "2"]
    for per_rank in launched.values():
        assert len(per_rank) == 2 and per_rank[0] == per_rank[1]
    jobs = [r for r in _job_runs(tmp_path) if r.data.tags["emotion_lab.role"] == "job"]
    assert len(jobs) == 3 and {r.data.params["num_processes"] for r in jobs} == {"2"}
    storage = open_storage(str(tmp_path / "outputs" / "optuna.journal"))
    (study,) = storage.get_all_studies()
    trials = optuna.load_study(study_name=study.study_name, storage=storage).get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [sorted(t.intermediate_values) for t in trials] == [[1]] * 3


def test_a_failed_job_stops_a_distributed_sweep(tmp_path: Path, tiny_checkpoint: Path):
    """Ranks that run a sweep together stop at a failed job: had it failed on rank 0 alone
    (MLflow), the other ranks would wait for it forever in the next job."""
    data = [o for o in DATA if not o.startswith("data.path")]
    sweep = ["-m", f"data.path=/no/such,{EMOTION}", f"model.name_or_path={tiny_checkpoint}"]
    sweep.append("preflight=false")  # the job starts and fails, on rank 0 first
    proc = accelerate_launch([*sweep, *data], tmp_path, processes=2)
    assert proc.returncode != 0
    assert "emotion_lab: error: data.path=/no/such: no such file or directory" in proc.stderr
    runs = _job_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags["emotion_lab.role"] == "sweep"]
    (job,) = [r for r in runs if r.data.tags["emotion_lab.role"] == "job"]
    assert job.info.status == "FAILED" and job.data.params["data.path"] == "/no/such"
    assert parent.info.status == "FAILED"  # closed on exit, though the sweep never ended


def test_sigterm_stops_both_ranks_at_one_step_and_resume_logs_the_same_numbers(
    sweep: Path, tiny_checkpoint: Path, tmp_path: Path
):
    """SIGTERM to the launcher, which passes it on to both ranks: they agree on one step, write
    one checkpoint at it (each rank's random state in it), and a resume logs what the
    uninterrupted job of the sweep above logged."""
    args = ["lr=1e-3", f"model.name_or_path={tiny_checkpoint}", *DATA]
    stopped = accelerate_launch(args, tmp_path, 2, env={ENV: "train_step:1:TERM@parent"})
    assert stopped.returncode != 0
    said = [line for line in stopped.stderr.splitlines() if "stopped by" in line]
    assert len(said) == 1, stopped.stderr[-3000:]  # rank 0's
    step = re.fullmatch(
        r"emotion_lab: stopped by SIGTERM at step (\d) \(checkpoint kept\): rerun with resume=true",
        said[0],
    )
    assert step is not None, said
    # The launcher prints its own traceback for the signal it got; none comes from the job.
    assert "emotion_lab/" not in stopped.stderr.split("Traceback", 1)[-1]
    (run,) = _job_runs(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.tags["emotion_lab.stopped_by"] == f"SIGTERM at step {step[1]}"
    (folder,) = tmp_path.glob("outputs/checkpoints/*")
    latest = folder / (folder / "latest").read_text()
    assert latest.name.startswith(f"step-0000000{step[1]}-epoch-1-")
    assert {p.name for p in latest.glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }

    resumed = accelerate_launch([*args, "resume=true"], tmp_path, 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = _job_runs(tmp_path)
    assert run.info.status == "FINISHED"
    reference = next(
        r
        for r in _job_runs(sweep)
        if r.data.tags["emotion_lab.role"] == "job" and float(r.data.params["lr"]) == 1e-3
    )
    got = histories(MlflowClient(tracking_uri(tmp_path)), run)
    want = histories(MlflowClient(tracking_uri(sweep)), reference)
    assert got.keys() == want.keys()
    for key in sorted(want):
        assert got[key] == want[key], key
