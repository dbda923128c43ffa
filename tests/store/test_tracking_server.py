"""tracking=server against a real `mlflow server` (sqlite backend, proxied artifact store) on a
free local port, started and stopped by the fixture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.artifacts import download_artifacts
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)
from mlflow.tracking import MlflowClient

from emotion_lab.store import server as tracking_server
from tests.conftest import SMALL_DATA, free_port, one_error_line, run_cli

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

TINY = ["model=tiny_gpt2", "init=scratch", "trainer.mixed_precision=no", *SMALL_DATA]
STARTUP_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server's URI and its artifact root."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    artifacts = root / "artifacts"
    mlflow_cli = [sys.executable, "-c", "from mlflow.cli import cli; cli()"]
    proc = subprocess.Popen(
        [
            *mlflow_cli,
            "server",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--backend-store-uri=sqlite:///{root / 'server.db'}",
            f"--artifacts-destination={artifacts}",
            "--serve-artifacts",
            "--workers=1",
        ],
        cwd=root,
        stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: teardown stops the workers too
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield uri, artifacts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_a_sweep_reports_runs_and_artifacts_to_the_server(server, tmp_path: Path, monkeypatch):
    uri, artifact_root = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team-emotion")
    proc = run_cli(["-m", "tracking=server", "lr=1e-3,3e-3", *TINY], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # nothing tracked locally

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("team-emotion")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["emotion_lab.role"] == "sweep"]
    jobs = [r for r in runs if r.data.tags["emotion_lab.role"] == "job"]
    assert parent.info.status == "FINISHED"
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert {r.data.params["tracking.uri"] for r in jobs} == {uri}

    for run in jobs:
        # Proxied: the client uploaded through the server, which stored the files.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "confusion_matrix.png", "model"} <= names
        png = download_artifacts(
            run_id=run.info.run_id, artifact_path="confusion_matrix.png", tracking_uri=uri
        )
        assert Path(png).read_bytes()[:4] == b"\x89PNG"
        stored = list(artifact_root.rglob(f"{run.info.run_id}/artifacts/model/config.json"))
        assert len(stored) == 1
    summary = download_artifacts(
        run_id=parent.info.run_id, artifact_path="sweep_summary.md", tracking_uri=uri
    )
    assert Path(summary).read_text().count("| FINISHED |") == 2


@pytest.mark.parametrize("mode", [[], ["-m"]], ids=["run", "sweep"])
def test_an_unreachable_server_fails_fast_in_one_line(tmp_path: Path, mode: list[str], monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    start = time.monotonic()
    proc = run_cli([*mode, "tracking=server", *TINY], tmp_path, timeout=300)
    elapsed = time.monotonic() - start
    assert one_error_line(proc) == (
        f"emotion_lab: error: tracking.uri={dead}: no MLflow server answers there "
        "(connection refused). Start it, or point tracking.uri or MLFLOW_TRACKING_URI at a "
        "running server."
    )
    assert elapsed < 60  # imports included; MLflow's own retries would take minutes


def test_http_retry_defaults_bound_mlflow_but_leave_user_settings(server, monkeypatch):
    uri, _ = server
    for name in tracking_server.HTTP_DEFAULTS:
        monkeypatch.setenv(name, "recorded")  # so that the undo removes what prepare() sets
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    tracking_server.prepare(uri)
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7
