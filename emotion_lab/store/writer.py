"""The run lifecycle of training: one MLflow run per job, a parent run per sweep, and a logger
that only the main process uses. Every write names its run and holds the store lock."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
from matplotlib.figure import Figure
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from emotion_lab.errors import one_line
from emotion_lab.store import names
from emotion_lab.store.connection import store_lock


def heartbeat_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunLogger:
    """Logs to one MLflow run; a no-op on non-main processes (``run_id`` is None).

    Writes hold the store lock, so parallel jobs on one sqlite file never see "database is
    locked". A resumed run skips (metric, step) pairs it already holds: replayed steps after a
    checkpoint are not logged twice. Metric writes refresh the run's heartbeat tag.
    """

    def __init__(self, run_id: str | None, logged: set[tuple[str, int]] | None = None) -> None:
        self.run_id = run_id
        self.logged = logged or set()
        self._client = MlflowClient() if run_id else None
        self._last_beat = -float("inf")

    def metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        if not self.run_id:
            return
        fresh = {k: float(v) for k, v in values.items() if (k, step) not in self.logged}
        if fresh:
            with store_lock():
                mlflow.log_metrics(fresh, step=step, run_id=self.run_id)
        self.heartbeat()

    def heartbeat(self, force: bool = False) -> None:
        """Record that the job is alive, at most every ``HEARTBEAT_EVERY_S`` unless ``force``."""
        now = time.monotonic()
        if force or now - self._last_beat >= names.HEARTBEAT_EVERY_S:
            self._last_beat = now
            self.tags({names.HEARTBEAT_TAG: heartbeat_now()})

    def params(self, values: Mapping[str, Any]) -> None:
        if self.run_id:
            with store_lock():
                mlflow.log_params(dict(values), run_id=self.run_id)

    def tags(self, values: Mapping[str, Any]) -> None:
        if self._client:
            with store_lock():
                for key, value in values.items():
                    self._client.set_tag(self.run_id, key, value)

    def text(self, text: str, path: str) -> None:
        if self.run_id:
            mlflow.log_text(text, path, run_id=self.run_id)

    def dict(self, data: dict, path: str) -> None:
        if self.run_id:
            mlflow.log_dict(data, path, run_id=self.run_id)

    def figure(self, fig: Figure, path: str) -> None:
        if self._client:
            self._client.log_figure(self.run_id, fig, path)

    def directory(self, local_dir: str | Path, path: str) -> None:
        if self.run_id:
            mlflow.log_artifacts(str(local_dir), path, run_id=self.run_id)


def find_job_run(experiment_id: str, job_key: str) -> Run | None:
    """The newest run of the same job (same ``job_key`` tag), if any."""
    with store_lock():
        runs = MlflowClient().search_runs(
            [experiment_id],
            filter_string=f"tags.{names.JOB_KEY_TAG} = '{job_key}'",
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


@contextlib.contextmanager
def tracked_run(
    experiment_id: str | None,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    resume: Run | None = None,
) -> Iterator[RunLogger]:
    """One MLflow run per job, always closed: FINISHED, FAILED (reason in the error tag) or
    KILLED.

    ``resume`` reopens that run instead, and the resume-count tag counts the resumptions. With
    ``experiment_id=None`` (non-main processes) nothing is logged.
    """
    if experiment_id is None:
        yield RunLogger(None)
        return
    client = MlflowClient()
    with store_lock():
        if resume is None:
            run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
            logged: set[tuple[str, int]] = set()
        else:
            run = resume
            client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            count = int(resume.data.tags.get(names.RESUME_COUNT_TAG, "0")) + 1
            client.set_tag(run.info.run_id, names.RESUME_COUNT_TAG, str(count))
            if names.ERROR_TAG in resume.data.tags:
                client.delete_tag(run.info.run_id, names.ERROR_TAG)
            logged = _logged_steps(resume)
    run_id = run.info.run_id
    status = RunStatus.FAILED
    try:
        logger = RunLogger(run_id, logged)
        logger.heartbeat(force=True)
        # A resumed run keeps its params (MLflow forbids changing them); a run killed before
        # they were all logged gets the rest.
        done = set() if resume is None else set(resume.data.params)
        missing = {k: v for k, v in params.items() if k not in done}
        if missing:
            logger.params(missing)
        yield logger
        status = RunStatus.FINISHED
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        logger.tags({names.ERROR_TAG: "interrupted"})
        raise
    except BaseException as e:
        logger.tags({names.ERROR_TAG: f"{type(e).__name__}: {one_line(e)}"[:5000]})
        raise
    finally:
        with store_lock():
            client.set_terminated(run_id, RunStatus.to_string(status))


def find_sweep_run(experiment_id: str, sweep_key: str) -> Run | None:
    """The newest parent run of a sweep with the same overrides (``sweep_key`` tag), if any."""
    with store_lock():
        runs = MlflowClient().search_runs(
            [experiment_id],
            filter_string=f"tags.`{names.ROLE_TAG}` = '{names.ROLE_SWEEP}' "
            f"and tags.`{names.SWEEP_KEY_TAG}` = '{sweep_key}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    return runs[0] if runs else None


def reopen_sweep_run(run: Run) -> None:
    """Mark a resumed sweep's parent run RUNNING again and count the resumption."""
    client = MlflowClient()
    count = int(run.data.tags.get(names.RESUME_COUNT_TAG, "0")) + 1
    with store_lock():
        client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        client.set_tag(run.info.run_id, names.RESUME_COUNT_TAG, str(count))
        client.set_tag(run.info.run_id, names.HEARTBEAT_TAG, heartbeat_now())


def create_sweep_run(experiment_id: str, sweep_id: str, tags: Mapping[str, str]) -> str:
    """A parent run that groups a sweep's jobs in the MLflow UI."""
    client = MlflowClient()
    with store_lock():
        run = client.create_run(
            experiment_id,
            run_name=f"sweep {sweep_id}",
            tags={
                names.SWEEP_TAG: sweep_id,
                names.ROLE_TAG: names.ROLE_SWEEP,
                names.HEARTBEAT_TAG: heartbeat_now(),
                **tags,
            },
        )
    return run.info.run_id


def end_sweep_run(run_id: str, failed: bool, summary_md: str) -> None:
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / names.SWEEP_SUMMARY_ARTIFACT
        path.write_text(summary_md)
        client.log_artifact(run_id, str(path))
    with store_lock():
        client.set_terminated(
            run_id, RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        )
