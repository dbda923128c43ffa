"""A shared tracking server as a team runs it: a real `mlflow server --app-name basic-auth` on
127.0.0.1 with its host checks, a user account, credentials from the environment or the URI, and
the server stopped and started again (same port, same store) under a running job."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from emotion_lab.errors import TrackingError, TrackingOutage
from emotion_lab.store import names, server
from emotion_lab.store.writer import PENDING_FILE, RunLogger, end_sweep_run
from tests.conftest import SMALL_DATA, free_port, one_error_line, run_cli

TINY = ["model=tiny_gpt2", "init=scratch", "trainer.mixed_precision=no", *SMALL_DATA]
STARTUP_TIMEOUT_S = 120
ADMIN = ("admin", "admin-password-for-tests")
# The user's password: the string that must never show up in the store, a log or outputs/.
USER = ("alice", "Sup3r-s3cret-d0-not-leak")
USER_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


class AuthServer:
    """`mlflow server --app-name basic-auth` that a test may stop (SIGKILL, as a crash) and start
    again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        (root / "basic_auth.ini").write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{root / 'auth.db'}\n"
            f"admin_username = {ADMIN[0]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # A password check is slow by design; checked once a minute per user, not per request.
            "auth_cache_ttl_seconds = 60\n"
        )

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "MLFLOW_AUTH_CONFIG_PATH": str(self.root / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-csrf-key",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from mlflow.cli import cli; cli()",
                "server",
                "--app-name=basic-auth",
                "--host=127.0.0.1",
                f"--port={self.port}",
                f"--allowed-hosts=127.0.0.1:{self.port}",
                f"--backend-store-uri=sqlite:///{self.root / 'server.db'}",
                f"--artifacts-destination={self.root / 'artifacts'}",
                "--serve-artifacts",
                "--workers=1",
            ],
            cwd=self.root,
            env=env,
            stdout=(self.root / f"server-{self.starts}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the workers too
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.answers(self.uri):
            assert self.proc.poll() is None, self.log()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.25)

    def stop(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def log(self) -> str:
        return "".join(p.read_text() for p in sorted(self.root.glob("server-*.log")))


@contextlib.contextmanager
def credentials(user: str, password: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in USER_ENV}
    os.environ.update(dict(zip(USER_ENV, (user, password), strict=True)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    srv = AuthServer(tmp_path_factory.mktemp("team-server"))
    srv.start()
    try:
        response = requests.post(
            f"{srv.uri}/api/2.0/mlflow/users/create",
            json={"username": USER[0], "password": USER[1]},
            auth=ADMIN,
            timeout=30,
        )
        assert response.ok, response.text
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop()


class CutShortProxy:
    """A TCP proxy in front of the server that breaks off its first ``cut`` replies after the
    headers and one byte of the body, as a server killed or restarting mid-reply does; later
    connections pass through. Requests name the server's own address as their Host (the server
    refuses other host names)."""

    def __init__(self, upstream_port: int, cut: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.to_cut = cut
        self.cut = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        with self.lock:
            cut = self.cut < self.to_cut
            self.cut += cut
        host = (
            b"Host: " + self.uri.split("//")[1].encode(),
            f"Host: 127.0.0.1:{self.upstream[1]}".encode(),
        )
        threading.Thread(target=self._pipe, args=(client, upstream, host), daemon=True).start()
        if not cut:
            self._pipe(upstream, client)
            return
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply) <= reply.index(b"\r\n\r\n") + 5:
            reply += upstream.recv(65536)
        client.sendall(reply[: reply.index(b"\r\n\r\n") + 5])  # headers, one body byte
        for end in (client, upstream):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)  # the peer sees the reply end here
            end.close()

    @staticmethod
    def _pipe(
        source: socket.socket, sink: socket.socket, replace: tuple[bytes, bytes] = (b"", b"")
    ) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data.replace(*replace) if replace[0] else data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def _job_runs(uri: str, experiment: str = "emotion_lab") -> list:
    with credentials(*ADMIN):
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = client.search_runs([found.experiment_id])
    return [r for r in runs if r.data.tags.get(names.ROLE_TAG) == names.ROLE_JOB]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


def test_the_server_refuses_a_host_name_it_does_not_serve(team_server: AuthServer):
    search = f"{team_server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, auth=ADMIN, timeout=30).status_code == 200
    foreign = requests.get(search, auth=ADMIN, headers={"Host": "evil.example"}, timeout=30)
    assert foreign.status_code == 403  # DNS rebinding: a browser tricked into a foreign name
    assert requests.get(search, timeout=30).status_code == 401  # no credentials, no runs


def test_missing_credentials_are_named(team_server: AuthServer, monkeypatch):
    for key in USER_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(TrackingError) as err:
        server.check_credentials(team_server.uri)
    assert str(err.value) == (
        f"tracking.uri={team_server.uri}: the MLflow server asks for credentials (HTTP 401). Set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account on that server."
    )


@pytest.fixture
def behind_cut_short_proxy(team_server: AuthServer, monkeypatch) -> Iterator[CutShortProxy]:
    """Alice's credentials, and this process's tracking URI pointing at a proxy in front of
    the team server that cuts its first reply short (``proxy.to_cut`` may raise that)."""
    monkeypatch.setenv(USER_ENV[0], USER[0])
    monkeypatch.setenv(USER_ENV[1], USER[1])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")  # a reply that hangs fails the test
    proxy = CutShortProxy(team_server.port, cut=1)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(proxy.uri)
    try:
        yield proxy
    finally:
        proxy.close()


def _new_run(uri: str, experiment: str) -> str:
    client = MlflowClient(uri)
    return client.create_run(client.create_experiment(experiment)).info.run_id


def test_a_reply_cut_short_mid_restart_is_waited_out_not_fatal(
    team_server: AuthServer, behind_cut_short_proxy: CutShortProxy, caplog
):
    """A sweep's parent run is closed through a server whose first reply (the run lookup before
    the summary upload) breaks off: the write waits for the server and goes through."""
    run_id = _new_run(team_server.uri, "cut-short")
    with caplog.at_level(logging.WARNING, logger="emotion_lab.store.writer"):
        end_sweep_run(run_id, failed=False, summary_md="| job | ok |", max_outage_s=60)
    assert behind_cut_short_proxy.cut == 1
    assert "does not answer" in caplog.text and "answers again after" in caplog.text
    client = MlflowClient(team_server.uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run_id)] == [names.SWEEP_SUMMARY_ARTIFACT]


def test_a_server_that_cuts_replies_short_past_the_limit_stops_the_write(
    team_server: AuthServer, behind_cut_short_proxy: CutShortProxy
):
    """Past ``max_outage_s`` a cut-short server stops the write with the outage's one line."""
    run_id = _new_run(team_server.uri, "cut-short-for-good")
    behind_cut_short_proxy.to_cut = 1000
    with pytest.raises(TrackingOutage, match="has not answered for"):
        RunLogger(run_id, max_outage_s=0.5).text("text", "note.txt")
    assert MlflowClient(team_server.uri).get_run(run_id).info.status == "RUNNING"


def test_a_run_stopped_by_a_signal_spools_its_writes_instead_of_waiting_for_the_server(
    team_server: AuthServer, behind_cut_short_proxy: CutShortProxy, tmp_path: Path
):
    """A job stopped by SIGTERM has seconds before SIGKILL: with the server cutting every reply,
    its close tries once and keeps the unsent writes in the spool, well within max_outage_s."""
    run_id = _new_run(team_server.uri, "stopped-in-an-outage")
    behind_cut_short_proxy.to_cut = 1000
    logger = RunLogger(run_id, max_outage_s=600)
    spool = tmp_path / PENDING_FILE
    logger.spool_to(spool)
    logger.metrics({"train_loss": 1.5}, step=7)  # buffered: the server does not answer
    logger.tags({names.STOPPED_TAG: "SIGTERM at step 7"})
    logger.end(RunStatus.KILLED, None, wait=False)
    batches = json.loads(spool.read_text())
    assert [m[0::3] for b in batches for m in b["metrics"]] == [["train_loss", 7]]
    assert [names.STOPPED_TAG, "SIGTERM at step 7"] in [t for b in batches for t in b["tags"]]
    assert MlflowClient(team_server.uri).get_run(run_id).info.status == "RUNNING"


@pytest.mark.slow
def test_wrong_credentials_end_a_sweep_in_one_line_before_training(
    team_server: AuthServer, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv(USER_ENV[0], USER[0])
    monkeypatch.setenv(USER_ENV[1], "not-her-password")
    proc = run_cli(["-m", f"tracking.uri={team_server.uri}", "lr=1e-3,3e-3", *TINY], tmp_path)
    assert one_error_line(proc) == (
        f"emotion_lab: error: tracking.uri={team_server.uri}: the MLflow server refused the "
        "credentials of user 'alice' (HTTP 401). Set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD to an account on that server."
    )
    assert "epoch" not in proc.stdout + proc.stderr
    assert _job_runs(team_server.uri) == []


@pytest.mark.slow
def test_credentials_in_the_uri_work_and_never_reach_store_logs_or_outputs(
    team_server: AuthServer, tmp_path: Path, monkeypatch
):
    for key in USER_ENV:
        monkeypatch.delenv(key, raising=False)
    secret_uri = f"http://{USER[0]}:{USER[1]}@127.0.0.1:{team_server.port}"
    proc = run_cli(
        ["-m", f"tracking.uri={secret_uri}", "tracking.experiment=uri-creds", "lr=1e-3", *TINY],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The server answers nothing without credentials: the URI's were used for every write.
    (run,) = _job_runs(team_server.uri, "uri-creds")
    assert run.info.status == "FINISHED"
    assert run.data.params["tracking.uri"] == f"http://***@127.0.0.1:{team_server.port}"
    # Hydra's launcher logs each job's overrides (colons escaped)
    assert f"tracking.uri=http\\://***@127.0.0.1\\:{team_server.port}" in proc.stdout
    assert f"Runs in the MLflow UI: {team_server.uri}/#/" in proc.stdout

    printed = (proc.stdout + proc.stderr).splitlines()
    assert [line for line in printed if USER[1] in line] == []
    secret = USER[1].encode()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "multirun.yaml" for p in written)
    assert any(p.name == "overrides.yaml" for p in written)
    stored = [p for p in team_server.root.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in stored)  # the run's config artifact
    leaks = [p for p in written + stored if secret in p.read_bytes()]
    assert leaks == []


@pytest.mark.slow
def test_a_job_rides_out_a_server_restart_and_stops_cleanly_past_the_outage_limit(
    team_server: AuthServer, tmp_path: Path, monkeypatch
):
    """First a job with tracking.max_outage_s=1 loses its server: it stops in one line, its
    checkpoint kept. The server comes back; resume=true continues the run, loses the server
    again mid-training, trains on while it restarts, and sends what it buffered."""
    monkeypatch.setenv(USER_ENV[0], USER[0])
    monkeypatch.setenv(USER_ENV[1], USER[1])
    steps_per_epoch, epochs = 100, 3
    args = [
        f"tracking.uri={team_server.uri}",
        "tracking.experiment=outage",
        *TINY,
        f"data.max_train_samples={16 * steps_per_epoch}",
        f"trainer.epochs={epochs}",
        "trainer.log_every_n_steps=1",
        "trainer.checkpoint_every_n_steps=5",
        "tracking.system_metrics_interval_s=1",
    ]
    cmd = [sys.executable, "-m", "emotion_lab", *args]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def start_job(name: str, *extra: str) -> subprocess.Popen:
        # Output goes to files, not pipes: the test reads nothing while the job runs, and a job
        # whose pipe fills (progress bars, about 1.5 KB/s) blocks in a write, through the outage.
        with (
            (tmp_path / f"{name}.out").open("w") as out,
            (tmp_path / f"{name}.err").open("w") as err,
        ):
            return subprocess.Popen([*cmd, *extra], cwd=tmp_path, env=env, stdout=out, stderr=err)

    def finish(job: subprocess.Popen, name: str, timeout: float) -> tuple[str, str]:
        job.wait(timeout=timeout)
        return (tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text()

    def logged_steps() -> list[int]:
        runs = _job_runs(team_server.uri, "outage")
        if not runs:
            return []
        with credentials(*ADMIN):
            history = MlflowClient(team_server.uri).get_metric_history(
                runs[0].info.run_id, "train_loss"
            )
        return sorted(m.step for m in history)

    def wait_for_step(job: subprocess.Popen, name: str, step: int) -> None:
        deadline = time.monotonic() + 240
        while not logged_steps() or logged_steps()[-1] < step:
            assert job.poll() is None, finish(job, name, 0)[1][-3000:]
            assert time.monotonic() < deadline, "the job logged no progress"
            time.sleep(0.5)

    # 1. Past the outage limit: the job stops, in one line, with its checkpoint kept.
    job = start_job("stopped", "tracking.max_outage_s=1")
    wait_for_step(job, "stopped", 6)  # a checkpoint at step 5 is on disk
    team_server.stop()
    out, err = finish(job, "stopped", 240)
    assert job.returncode == 1, err[-3000:]
    (line,) = _error_lines(err)
    assert line.startswith(
        f"emotion_lab: error: tracking.uri={team_server.uri}: the MLflow server has not answered "
        "for "
    )
    assert "(tracking.max_outage_s=1), so the job stopped; its checkpoint and " in line
    assert line.endswith("Rerun the same command with resume=true once the server is back.")
    (ckpt,) = (tmp_path / "outputs" / "checkpoints").iterdir()
    assert (ckpt / "latest").is_file() and (ckpt / "pending_writes.json").is_file()
    team_server.start()
    (stopped,) = _job_runs(team_server.uri, "outage")
    assert stopped.info.status == "RUNNING"  # the server was gone: nobody could close it
    spooled = json.loads((ckpt / "pending_writes.json").read_text())
    last = max([logged_steps()[-1], *(m[3] for b in spooled for m in b["metrics"])])

    # 2. resume=true continues the run; the server goes away mid-training and comes back.
    job = start_job("resumed", "resume=true")
    # The first step this attempt measures: the spooled steps arrive before training starts,
    # ahead of the config artifact, which waits out an outage instead of being buffered.
    wait_for_step(job, "resumed", last + 1)
    # Held mid-training while its server goes away, so that it trains on during the outage
    # however fast it runs.
    job.send_signal(signal.SIGSTOP)
    assert logged_steps()[-1] <= steps_per_epoch * epochs - 10, "the job ran to its end first"
    team_server.stop()
    down = time.time()
    job.send_signal(signal.SIGCONT)
    # Longer than MLflow's own retries of the write in flight (about 8 s with the bounded
    # defaults of emotion_lab.store.server), so that the job notes the outage and trains on.
    time.sleep(20)
    team_server.start()
    up = time.time()
    out, err = finish(job, "resumed", 300)
    assert job.returncode == 0, err[-3000:]
    assert "does not answer" in out and "answers again after" in out

    (run,) = _job_runs(team_server.uri, "outage")
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.RESUME_COUNT_TAG] == "1"
    assert names.ERROR_TAG not in run.data.tags
    with credentials(*ADMIN):
        history = MlflowClient(team_server.uri).get_metric_history(run.info.run_id, "train_loss")
    # Every step once, none lost across the stop, the spool and the second outage.
    assert sorted(m.step for m in history) == list(range(1, steps_per_epoch * epochs + 1))
    by_step = sorted(history, key=lambda m: m.step)
    assert [m.timestamp for m in by_step] == sorted(m.timestamp for m in by_step)
    # Measured while the server was down, delivered after it came back.
    during = [m.step for m in by_step if down * 1000 < m.timestamp < up * 1000]
    assert during, (
        [(m.step, round(m.timestamp / 1000 - down, 2)) for m in by_step],
        round(up - down, 2),
        out[-3000:],
        err[-3000:],
    )
    assert not (tmp_path / "outputs" / "checkpoints" / ckpt.name).exists()
    # System metrics went the same way: sampled on through the outage, sent after it, numbered
    # on across the resume, none twice.
    with credentials(*ADMIN):
        cpu = MlflowClient(team_server.uri).get_metric_history(run.info.run_id, names.SYSTEM_CPU)
    steps = [m.step for m in cpu]
    assert len(steps) == len(set(steps)) and len(steps) > 3, steps
    assert any(down * 1000 < m.timestamp < up * 1000 for m in cpu), steps
