"""Stale runs made visible: a sweep SIGKILLed mid-job leaves its parent and job RUNNING; they
show as alive while their heartbeat is recent, as stale once it is old (in `runs`, `compare` and
a later sweep's summary), and only `runs mark-killed` closes them."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from emotion_lab.faults import ENV
from emotion_lab.store import names
from emotion_lab.store.reader import STALE_HINT
from emotion_lab.train.sweep import stale_summary
from tests.conftest import SMALL_DATA, run_cli, sweep_runs, tracking_uri

SWEEP = ["-m", "model=tiny_gpt2", "init=scratch", "lr=1e-3", "trainer.mixed_precision=no"]
RUNS = "emotion_lab.runs"


def _runs_cli(cwd: Path, *args: str):
    return run_cli([*args], cwd, module=RUNS)


def _age_heartbeats(cwd: Path, hours: float) -> None:
    """Set every run's last heartbeat ``hours`` back, as if that much time had passed."""
    client = MlflowClient(tracking_uri(cwd))
    then = datetime.now(timezone.utc) - timedelta(hours=hours)
    parents, jobs = sweep_runs(cwd)
    for run in [*parents, *jobs]:
        client.set_tag(run.info.run_id, names.HEARTBEAT_TAG, then.isoformat(timespec="seconds"))


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("killed")
    os.environ[ENV] = "train_step:2"
    try:
        proc = run_cli([*SWEEP, *SMALL_DATA], cwd)
    finally:
        del os.environ[ENV]
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return cwd


@pytest.mark.slow
def test_a_killed_sweep_is_alive_then_stale_and_closed_only_on_request(killed: Path):
    (parent,), (job,) = sweep_runs(killed)
    assert parent.info.status == job.info.status == "RUNNING"
    beat = datetime.fromisoformat(job.data.tags[names.HEARTBEAT_TAG]).timestamp()
    assert time.time() - beat < 600

    listed = _runs_cli(killed)
    assert listed.returncode == 0, listed.stderr[-2000:]
    lines = {r.info.run_id: _line_of(listed.stdout, r.info.run_id) for r in (parent, job)}
    assert all("alive (last heartbeat" in line for line in lines.values()), listed.stdout
    assert STALE_HINT not in listed.stdout

    refused = _runs_cli(killed, "mark-killed", job.info.run_id)
    assert refused.returncode == 1
    (error,) = refused.stderr.strip().splitlines()
    assert "probably still running" in error and "--force" in error
    assert sweep_runs(killed)[1][0].info.status == "RUNNING"

    _age_heartbeats(killed, hours=2)
    listed = _runs_cli(killed)
    # 2 h, and the minutes the test itself took.
    stale = re.escape(STALE_HINT) + r" \(last heartbeat 2\.\d h ago\)"
    for run in (parent, job):
        assert re.search(stale, _line_of(listed.stdout, run.info.run_id)), listed.stdout
    assert "mark-killed --stale" in listed.stdout
    # A threshold longer than the silence makes them alive again.
    assert STALE_HINT not in _runs_cli(killed, "--stale-after", "180").stdout

    compared = run_cli([], killed, module="emotion_lab.compare")
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert f"RUNNING run {job.info.run_id} ({job.info.run_name}): {STALE_HINT}" in compared.stdout

    # What a later sweep's summary adds about them.
    client = MlflowClient(tracking_uri(killed))
    experiment_id = client.get_experiment_by_name("emotion_lab").experiment_id
    mlflow.set_tracking_uri(tracking_uri(killed))  # as the sweep's start does
    summary = stale_summary(experiment_id)
    assert summary.startswith("\n2 RUNNING run(s) of this experiment stopped sending heartbeats")
    assert f"- run {job.info.run_id} ({job.info.run_name}): {STALE_HINT}" in summary

    marked = _runs_cli(killed, "mark-killed", "--stale")
    assert marked.returncode == 0, marked.stderr[-2000:]
    assert f"Marked KILLED: {job.info.run_id}" in marked.stdout
    (parent,), (job,) = sweep_runs(killed)
    assert parent.info.status == job.info.status == "KILLED"
    reason = r"marked KILLED by the user after 2\.\d h without a heartbeat"
    assert re.fullmatch(reason, job.data.tags[names.ERROR_TAG])
    assert "No RUNNING runs" in _runs_cli(killed).stdout
    again = _runs_cli(killed, "mark-killed", job.info.run_id)
    assert again.returncode == 1 and "is KILLED, not RUNNING" in again.stderr


def _line_of(text: str, run_id: str) -> str:
    return next(line for line in text.splitlines() if run_id in line)
