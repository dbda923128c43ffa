"""MLflow tracking: store setup, run lifecycle, and a logger that only the main process uses.

The default store is an sqlite file. Several jobs may open it at once (parallel launchers), and
sqlite races on schema migration and experiment creation, so those steps hold a file lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from matplotlib.figure import Figure
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from emotion_lab import tracking_server
from emotion_lab.config import TrackingConfig
from emotion_lab.errors import TrackingError

log = logging.getLogger(__name__)

SWEEP_TAG = "sweep_id"
ROLE_TAG = "emotion_lab.role"
# Hash of the config that defines a job; reruns with resume=true find their run by it.
JOB_KEY_TAG = "job_key"


def resolve_uri(uri: str) -> str:
    """Make a relative sqlite path absolute, so jobs agree whatever their working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    with FileLock(str(db) + ".lock", timeout=300):
        yield


def setup(cfg: TrackingConfig) -> str:
    """Point MLflow at the store and return the experiment id, creating it if needed."""
    uri = resolve_uri(cfg.uri)
    db = _sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"tracking.uri={cfg.uri}: cannot create {db.parent}: {e}") from e
    mlflow.set_tracking_uri(uri)
    tracking_server.prepare(uri)
    try:
        with store_lock(uri):
            client = MlflowClient(uri)
            experiment = client.get_experiment_by_name(cfg.experiment)
            if experiment is not None:
                return experiment.experiment_id
            location = cfg.artifact_location
            if location is None and db is not None:
                location = (db.parent / "artifacts").resolve().as_uri()
            return client.create_experiment(cfg.experiment, artifact_location=location)
    except TrackingError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrackingError(f"tracking.uri={cfg.uri}: cannot open the MLflow store: {first}") from e


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their JSON text."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + ".") if value else {name: "{}"})
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return flat


class RunLogger:
    """Logs to one MLflow run; a no-op on non-main processes (``run_id`` is None).

    Writes hold the store lock, so parallel jobs on one sqlite file never see "database is
    locked". A resumed run skips (metric, step) pairs it already holds: replayed steps after a
    checkpoint are not logged twice.
    """

    def __init__(self, run_id: str | None, logged: set[tuple[str, int]] | None = None) -> None:
        self.run_id = run_id
        self.logged = logged or set()
        self._client = MlflowClient() if run_id else None

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return store_lock(mlflow.get_tracking_uri())

    def metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        if not self.run_id:
            return
        fresh = {k: float(v) for k, v in values.items() if (k, step) not in self.logged}
        if fresh:
            with self._locked():
                mlflow.log_metrics(fresh, step=step, run_id=self.run_id)

    def params(self, values: Mapping[str, Any]) -> None:
        if self.run_id:
            with self._locked():
                mlflow.log_params(dict(values), run_id=self.run_id)

    def tags(self, values: Mapping[str, Any]) -> None:
        if self.run_id:
            with self._locked():
                mlflow.set_tags(dict(values))

    def text(self, text: str, path: str) -> None:
        if self.run_id:
            mlflow.log_text(text, path, run_id=self.run_id)

    def dict(self, data: dict, path: str) -> None:
        if self.run_id:
            mlflow.log_dict(data, path, run_id=self.run_id)

    def figure(self, fig: Figure, path: str) -> None:
        if self.run_id:
            mlflow.log_figure(fig, path)

    def directory(self, local_dir: str | Path, path: str) -> None:
        if self.run_id:
            mlflow.log_artifacts(str(local_dir), path, run_id=self.run_id)


def find_job_run(experiment_id: str, job_key: str) -> Run | None:
    """The newest run of the same job (same ``job_key`` tag), if any."""
    with store_lock(mlflow.get_tracking_uri()):
        runs = MlflowClient().search_runs(
            [experiment_id],
            filter_string=f"tags.{JOB_KEY_TAG} = '{job_key}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    return runs[0] if runs else None


def _logged_steps(run: Run) -> set[tuple[str, int]]:
    client = MlflowClient()
    return {
        (key, m.step)
        for key in run.data.metrics
        for m in client.get_metric_history(run.info.run_id, key)
    }


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def tracked_run(
    experiment_id: str | None,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    resume: Run | None = None,
) -> Iterator[RunLogger]:
    """One MLflow run per job, always closed: FINISHED, FAILED (reason in tag ``error``) or KILLED.

    ``resume`` reopens that run instead: params are not logged again (MLflow forbids changing
    them), and the tag ``resume_count`` counts the resumptions. With ``experiment_id=None``
    (non-main processes) nothing is logged.
    """
    if experiment_id is None:
        yield RunLogger(None)
        return
    with store_lock(mlflow.get_tracking_uri()):
        if resume is None:
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags))
            logged: set[tuple[str, int]] = set()
        else:
            run = mlflow.start_run(run_id=resume.info.run_id)
            count = int(resume.data.tags.get("resume_count", "0")) + 1
            mlflow.set_tag("resume_count", str(count))
            if "error" in resume.data.tags:
                MlflowClient().delete_tag(run.info.run_id, "error")
            logged = _logged_steps(resume)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        logger = RunLogger(run.info.run_id, logged)
        if resume is None:
            logger.params(params)
        yield logger
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        mlflow.set_tag("error", "interrupted")
        raise
    except BaseException as e:
        mlflow.set_tag("error", f"{type(e).__name__}: {one_line(e)}"[:5000])
        raise
    finally:
        with store_lock(mlflow.get_tracking_uri()):
            mlflow.end_run(status)


def create_sweep_run(experiment_id: str, sweep_id: str, tags: Mapping[str, str]) -> str:
    """A parent run that groups a sweep's jobs in the MLflow UI."""
    client = MlflowClient()
    with store_lock(mlflow.get_tracking_uri()):
        run = client.create_run(
            experiment_id,
            run_name=f"sweep {sweep_id}",
            tags={SWEEP_TAG: sweep_id, ROLE_TAG: "sweep", **tags},
        )
    return run.info.run_id


def end_sweep_run(run_id: str, failed: bool, summary_md: str) -> None:
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep_summary.md"
        path.write_text(summary_md)
        client.log_artifact(run_id, str(path))
    client.set_terminated(
        run_id, RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
    )
