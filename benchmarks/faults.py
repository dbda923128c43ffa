"""Seeded fault matrix: a 2-job sweep is SIGKILLed at random moments of every phase, and sent
SIGTERM once in every phase, resumed with ``resume=true``, and checked against an uninterrupted
reference sweep.

    HF_HUB_CACHE=$PWD/../shared/hf-hub HF_HUB_OFFLINE=1 \\
        python benchmarks/faults.py --data ../shared/data/emotion --points 32 --seed 0
    nox -s faults -- --data ../shared/data/emotion

The reference sweep counts the fault points of each phase (``emotion_lab/faults.py``); each
fault then picks a phase and an occurrence N from the seed (the first ones cover every phase),
kills a fresh sweep there with SIGKILL, and reruns the same command with ``resume=true``. It
survived when, afterwards:

- each job has exactly one run, FINISHED, whose every metric history (step and value, timing
  metrics left out) equals the reference's: no step duplicated or missing, no value changed;
- no run is RUNNING, and no checkpoint folder is left under outputs/checkpoints;
- the store holds one sweep parent run, FINISHED, holding both jobs, and its summary lists both
  as FINISHED.

A job that fails the first check is a run lost. A sweep stopped by SIGTERM must also have
stopped politely (``check_stopped``): exit 143, one line, every run closed, and a checkpoint at
the step it stopped at (else the difference counts as steps lost). Any failure is reproduced by
its line's ``EMOTION_LAB_FAULT=...`` value with the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlflow.artifacts import download_artifacts
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from emotion_lab.faults import ENV, PHASES
from emotion_lab.store import names

REPO = Path(__file__).resolve().parent.parent

Histories = dict[str, list[tuple[int, float]]]


def sweep_args(data: str) -> list[str]:
    """The smallest sweep that goes through every phase: 2 jobs of 2 epochs of 4 steps, a
    checkpoint every 3 steps (mid-epoch and at epoch ends), validation and test of 2 batches."""
    return [
        "-m",
        "model=tiny_gpt2",
        "init=scratch",
        "lr=1e-3,3e-3",
        f"data.path={data}",
        "data.max_train_samples=32",
        "data.max_eval_samples=16",
        "trainer.epochs=2",
        "trainer.batch_size=8",
        "trainer.eval_batch_size=8",
        "trainer.log_every_n_steps=2",
        "trainer.checkpoint_every_n_steps=3",
        "trainer.mixed_precision=no",
    ]


@dataclass(frozen=True)
class Fault:
    phase: str
    n: int
    # Seconds after the point: the kill lands inside the work that follows it.
    delay: float = 0.0
    # KILL, or TERM: the polite stop of a person or a scheduler.
    signal: str = "KILL"

    @property
    def spec(self) -> str:
        spec = f"{self.phase}:{self.n}" + (f":{self.delay:g}" if self.delay else "")
        return spec if self.signal == "KILL" else f"{spec}:{self.signal}"


def plan(
    counts: dict[str, int], points: int, seed: int, signals: tuple[str, ...] = ("KILL", "TERM")
) -> list[Fault]:
    """``points`` SIGKILL faults: one in each phase first, then phases at random. Model uploads
    also get kills a random fraction of a second after they start. Then a SIGTERM in each
    phase, at a random point of it."""
    rng = random.Random(seed)
    phases = list(PHASES) + [rng.choice(PHASES) for _ in range(max(points - len(PHASES), 0))]
    faults = []
    for i, phase in enumerate(phases):
        n = rng.randint(1, counts[phase])
        # Odd points of model_artifact come before an upload (even ones after it).
        late = i >= len(PHASES) and phase == "model_artifact" and n % 2 == 1
        faults.append(Fault(phase, n, round(rng.uniform(0.01, 0.2), 3) if late else 0.0))
    terms = [Fault(phase, rng.randint(1, counts[phase]), signal="TERM") for phase in PHASES]
    return [f for f in faults + terms if f.signal in signals]


def run_sweep(
    args: list[str], cwd: Path, fault: str | None = None, timeout: int = 900
) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
    env.pop(ENV, None)
    if fault is not None:
        env[ENV] = fault
    return subprocess.run(
        [sys.executable, "-m", "emotion_lab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def client_for(cwd: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{cwd / 'outputs' / 'mlflow.db'}")


def all_runs(client: MlflowClient) -> list[Run]:
    experiment = client.get_experiment_by_name("emotion_lab")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def histories(client: MlflowClient, run: Run, timing: bool = False) -> Histories:
    """Every metric's (step, value) list in step order; timing metrics only with ``timing``."""
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
        if timing or not names.is_measured(key)
    }


def job_histories(cwd: Path) -> dict[int, Histories]:
    """The metric histories of each job of an uninterrupted sweep, by job number."""
    client = client_for(cwd)
    jobs = [r for r in all_runs(client) if r.data.tags.get(names.ROLE_TAG) == names.ROLE_JOB]
    return {int(r.data.tags[names.JOB_NUM_TAG]): histories(client, r) for r in jobs}


def check(cwd: Path, reference: dict[int, Histories], stdout: str) -> tuple[list[str], int]:
    """What is wrong with a resumed sweep's store and files, and how many job runs were lost."""
    client = client_for(cwd)
    runs = all_runs(client)
    jobs = [r for r in runs if r.data.tags.get(names.ROLE_TAG) == names.ROLE_JOB]
    parents = [r for r in runs if r.data.tags.get(names.ROLE_TAG) == names.ROLE_SWEEP]
    problems, lost = [], 0
    for num, expected in reference.items():
        mine = [r for r in jobs if r.data.tags.get(names.JOB_NUM_TAG) == str(num)]
        if len(mine) != 1 or mine[0].info.status != "FINISHED":
            problems.append(f"job {num}: runs {[r.info.status for r in mine]}, not one FINISHED")
            lost += 1
            continue
        got = histories(client, mine[0])
        if got != expected:
            wrong = sorted(k for k in expected.keys() | got.keys() if got.get(k) != expected.get(k))
            problems.append(f"job {num}: metrics differ from the reference: {', '.join(wrong)}")
            lost += 1
        for key, points in histories(client, mine[0], timing=True).items():
            steps = [step for step, _ in points]
            if len(steps) != len(set(steps)):
                problems.append(f"job {num}: metric {key} has a duplicated step")
    running = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    if running:
        problems.append(f"runs left RUNNING: {running}")
    checkpoints = cwd / "outputs" / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        problems.append(f"checkpoint folders left: {sorted(p.name for p in checkpoints.iterdir())}")
    problems += _check_parent(client, parents, jobs, len(reference), stdout)
    return problems, lost


def _check_parent(
    client: MlflowClient, parents: list[Run], jobs: list[Run], n_jobs: int, stdout: str
) -> list[str]:
    if len(parents) != 1:
        return [f"{len(parents)} sweep parent runs, not 1"]
    parent = parents[0]
    sweep_id = parent.data.tags[names.SWEEP_TAG]
    problems = []
    if parent.info.status != "FINISHED":
        problems.append(f"sweep parent run is {parent.info.status}")
    for job in jobs:
        if job.data.tags.get(names.PARENT_TAG) != parent.info.run_id:
            problems.append(f"job {job.data.tags.get(names.JOB_NUM_TAG)} is not under the parent")
        if job.data.tags.get(names.SWEEP_TAG) != sweep_id:
            problems.append(f"job {job.data.tags.get(names.JOB_NUM_TAG)} has another sweep id")
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(
            download_artifacts(
                run_id=parent.info.run_id,
                artifact_path=names.SWEEP_SUMMARY_ARTIFACT,
                dst_path=tmp,
                tracking_uri=client.tracking_uri,
            )
        ).read_text()
    for num in range(n_jobs):
        if not any(
            line.startswith(f"| {num} |") and "| FINISHED |" in line
            for line in summary.splitlines()
        ):
            problems.append(f"the sweep summary does not list job {num} as FINISHED")
    if f"Sweep {sweep_id}: {n_jobs} finished, 0 failed" not in stdout:
        problems.append("the resumed sweep did not print its full summary")
    return problems


@dataclass
class Outcome:
    fault: Fault
    problems: list[str]
    lost: int
    seconds: float
    # SIGTERM: optimizer steps the stopped job had trained beyond its newest checkpoint.
    steps_lost: int = 0

    @property
    def survived(self) -> bool:
        return not self.problems


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


STOP_LINE = re.compile(
    r"^emotion_lab: stopped by SIG(\w+) (?:at step (\d+) \(checkpoint kept\)|before training)"
    r": rerun with resume=true$"
)


def check_stopped(cwd: Path, proc: subprocess.CompletedProcess) -> tuple[list[str], int]:
    """What is wrong with a sweep stopped by SIGTERM, and how many optimizer steps it trained
    beyond its newest checkpoint. It ends with one line and 143, every run closed (the job
    KILLED, tagged, the parent closed); a stop after its last job lets it end as usual."""
    if proc.returncode == 0 and "0 failed" in proc.stdout:
        return [], 0
    lines = [line for line in proc.stderr.splitlines() if STOP_LINE.match(line)]
    problems = []
    if proc.returncode != 128 + signal.SIGTERM:
        problems.append(f"exited with {proc.returncode}, not 143 ({last_line(proc.stderr)})")
    if len(lines) != 1 or "Traceback" in proc.stderr:
        problems.append(f"not one line and no traceback: {last_line(proc.stderr)}")
    runs = all_runs(client_for(cwd))
    running = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    if running:
        problems.append(f"runs left RUNNING by the stop: {running}")
    parents = [r for r in runs if r.data.tags.get(names.ROLE_TAG) == names.ROLE_SWEEP]
    if [(r.info.status, r.data.tags.get(names.STOPPED_TAG)) for r in parents] != [
        ("KILLED", "SIGTERM")
    ]:
        problems.append(f"sweep parent runs: {[r.info.status for r in parents]}, not 1 KILLED")
    steps_lost = 0
    step = STOP_LINE.match(lines[0]).group(2) if len(lines) == 1 else None
    jobs = [
        r
        for r in runs
        if r.info.status == "KILLED" and r.data.tags.get(names.ROLE_TAG) == names.ROLE_JOB
    ]
    if step is not None and jobs:
        (job,) = jobs
        if job.data.tags.get(names.STOPPED_TAG) != f"SIGTERM at step {step}":
            problems.append(f"stopped job's tag is {job.data.tags.get(names.STOPPED_TAG)!r}")
        latest = Path(job.data.tags.get(names.CHECKPOINT_DIR_TAG, "-")) / "latest"
        kept = int(latest.read_text().split("-")[1]) if latest.exists() else 0
        steps_lost = int(step) - kept
    return problems, steps_lost


def inject(args: list[str], cwd: Path, fault: Fault, reference: dict[int, Histories]) -> Outcome:
    """Kill (or stop) a fresh sweep at ``fault``, resume it, check it."""
    start = time.perf_counter()
    killed = run_sweep(args, cwd, fault.spec)
    problems, steps_lost = [], 0
    if fault.signal == "TERM":
        problems, steps_lost = check_stopped(cwd, killed)
    elif killed.returncode != -signal.SIGKILL:
        problem = (
            f"not killed: the sweep exited with {killed.returncode} ({last_line(killed.stderr)})"
        )
        return Outcome(fault, [problem], 0, time.perf_counter() - start)
    resumed = run_sweep([*args, "resume=true"], cwd)
    if resumed.returncode != 0:
        problem = f"resume=true failed ({resumed.returncode}): {last_line(resumed.stderr)}"
        return Outcome(fault, [*problems, problem], len(reference), time.perf_counter() - start)
    found, lost = check(cwd, reference, resumed.stdout)
    return Outcome(fault, problems + found, lost, time.perf_counter() - start, steps_lost)


def reference_sweep(args: list[str], cwd: Path) -> tuple[dict[int, Histories], dict[str, int]]:
    """Run the sweep without a fault; its job histories and the fault points of each phase."""
    counts = cwd / "fault-points.json"
    done = run_sweep(args, cwd, f"count:{counts}")
    if done.returncode != 0:
        raise SystemExit(f"the reference sweep failed: {last_line(done.stderr)}")
    return job_histories(cwd), json.loads(counts.read_text())


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dair-ai/emotion: a local dir or hub id")
    parser.add_argument("--points", type=int, default=32, help="faults to inject (>= 8)")
    parser.add_argument("--seed", type=int, default=0, help="picks the faults")
    parser.add_argument("--workdir", type=Path, help="keep every sweep here (default: a temp dir)")
    parser.add_argument("--jobs", type=int, default=1, help="faults run side by side")
    parser.add_argument(
        "--signals", default="KILL,TERM", help="KILL (the seeded points), TERM (each phase)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        # The sweeps run in scratch folders: a local dataset path is made absolute first.
        data = str(Path(args.data).resolve()) if Path(args.data).exists() else args.data
        sweep = sweep_args(data)
        reference, counts = reference_sweep(sweep, workdir / "reference")
        faults = plan(counts, args.points, args.seed, tuple(args.signals.split(",")))
        print(f"Fault points per phase in the reference sweep: {counts}")
        print(f"{len(faults)} faults from seed {args.seed} ({ENV}=PHASE:N[:DELAY_S]):", flush=True)

        def one(i: int, fault: Fault) -> Outcome:
            cwd = workdir / f"{i:02d}-{fault.spec.replace(':', '-')}"
            outcome = inject(sweep, cwd, fault, reference)
            verdict = "survived" if outcome.survived else "FAILED: " + "; ".join(outcome.problems)
            line = f"  [{i:2d}/{len(faults)}] {ENV}={fault.spec:<28} {outcome.seconds:4.0f} s"
            print(f"{line}  {verdict}", flush=True)
            return outcome

        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(one, range(1, len(faults) + 1), faults))
    hit = {phase: sum(o.fault.phase == phase for o in outcomes) for phase in PHASES}
    print("Phases hit: " + ", ".join(f"{phase} {n}x" for phase, n in hit.items()))
    survived = sum(o.survived for o in outcomes)
    lost = sum(o.lost for o in outcomes)
    steps_lost = sum(o.steps_lost for o in outcomes)
    print(
        f"{survived} of {len(outcomes)} faults survived, {lost} runs lost, "
        f"{steps_lost} steps lost on SIGTERM"
    )
    if survived < len(outcomes) or lost or steps_lost or not all(hit.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
