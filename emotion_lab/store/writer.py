"""The run lifecycle of training: one MLflow run per job, a parent run per sweep, and a logger
that only the main process uses. Every write names its run, holds the store lock and is
redacted (``emotion_lab.redaction``): no credential reaches the store.

A tracking server may go away mid-job. Metrics and tags then wait in memory, in order, and the
job trains on; they are sent as soon as the server answers again. Other writes (artifacts, the
run's end) wait for it. Past ``tracking.max_outage_s`` the job stops: the run stays RUNNING, the
unsent writes are kept beside its checkpoint, and ``resume=true`` sends them and continues.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import mlflow
from mlflow.entities import DatasetInput, Metric, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from emotion_lab.config import TrackingConfig
from emotion_lab.errors import TrackingOutage, one_line
from emotion_lab.redaction import redact, redact_tree
from emotion_lab.stopping import Stopped, deferred
from emotion_lab.storage import write_text_atomically
from emotion_lab.store import names, server
from emotion_lab.store.connection import store_lock
from emotion_lab.store.reader import search_all

log = logging.getLogger(__name__)

# Writes that a job stopped by an outage could not send, kept beside its checkpoint.
PENDING_FILE = "pending_writes.json"

# Buffered writes, in order: each is one log_batch call.
_Batch = tuple[list[Metric], list[RunTag]]


class MetricSource(Protocol):
    """Metrics measured elsewhere (another thread) that the logger sends with its own writes."""

    def drain(self) -> list[Metric]: ...

    def stop(self) -> list[Metric]: ...


def heartbeat_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunLogger:
    """Logs to one MLflow run; a no-op on non-main processes (``run_id`` is None).

    Writes hold the store lock, so parallel jobs on one sqlite file never see "database is
    locked". A resumed run skips (metric, step) pairs it already holds: replayed steps after a
    checkpoint are not logged twice. Metric writes refresh the run's heartbeat tag. While the
    server does not answer, metrics and tags are buffered (see the module docstring).
    """

    def __init__(
        self,
        run_id: str | None,
        logged: set[tuple[str, int]] | None = None,
        max_outage_s: float = TrackingConfig.max_outage_s,
    ) -> None:
        self.run_id = run_id
        self.logged = logged or set()
        self.max_outage_s = max_outage_s
        self._client = MlflowClient() if run_id else None
        self._last_beat = -float("inf")
        self._uri = mlflow.get_tracking_uri()
        self._pending: list[_Batch] = []
        self._spool: Path | None = None
        # Outage bookkeeping (time.monotonic): when the first unanswered write began, the last try.
        self._down_since: float | None = None
        self._last_try = -math.inf
        self.stopped = False
        self._sources: list[MetricSource] = []

    def metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        if not self.run_id:
            return
        now = get_current_time_millis()
        fresh = [
            Metric(k, float(v), now, step)
            for k, v in values.items()
            if (k, step) not in self.logged
        ]
        fresh += self._drained()
        if fresh:
            self._pending.append((fresh, []))
            self._send(wait=False)
        self.heartbeat()

    @property
    def answering(self) -> bool:
        """Whether the server answered the last write (always, for a local store)."""
        return self._down_since is None

    def heartbeat(self, force: bool = False) -> None:
        """Record that the job is alive, at most every ``HEARTBEAT_EVERY_S`` unless ``force``."""
        now = time.monotonic()
        if force or now - self._last_beat >= names.HEARTBEAT_EVERY_S:
            self._last_beat = now
            self.tags({names.HEARTBEAT_TAG: heartbeat_now()})

    def tags(self, values: Mapping[str, Any]) -> None:
        if self.run_id:
            self._pending.append(([], [RunTag(k, redact(str(v))) for k, v in values.items()]))
            self._send(wait=False)

    def params(self, values: Mapping[str, Any]) -> None:
        if self.run_id:
            clean = redact_tree(dict(values))
            self._deliver(partial(mlflow.log_params, clean, run_id=self.run_id))

    def text(self, text: str, path: str) -> None:
        if self.run_id:
            self._deliver(partial(mlflow.log_text, redact(text), path, run_id=self.run_id))

    def dict(self, data: dict, path: str) -> None:
        if self.run_id:
            self._deliver(partial(mlflow.log_dict, redact_tree(data), path, run_id=self.run_id))

    def file(self, local_path: str | Path) -> None:
        """A file already written (a figure saved once, not rendered again), at the root."""
        if self.run_id:
            self._deliver(partial(mlflow.log_artifact, str(local_path), run_id=self.run_id))

    def directory(self, local_dir: str | Path, path: str) -> None:
        if self.run_id:
            self._deliver(partial(mlflow.log_artifacts, str(local_dir), path, run_id=self.run_id))

    def inputs(self, inputs: list[DatasetInput]) -> None:
        """The run's dataset inputs (``store.datasets``)."""
        if self._client and inputs:
            self._deliver(partial(self._client.log_inputs, self.run_id, datasets=inputs))

    def write(self, write: Callable[[MlflowClient, str], object]) -> None:
        """Any other write, ``write(client, run_id)``: under the lock, after the buffered ones,
        through an outage as artifacts go."""
        if self._client:
            self._deliver(partial(write, self._client, self.run_id))

    def follow(self, source: MetricSource) -> None:
        """Send ``source``'s metrics with the run's own, until the run ends."""
        self._sources.append(source)

    def _drained(self, stop: bool = False) -> list[Metric]:
        taken = [m for s in self._sources for m in (s.stop() if stop else s.drain())]
        if stop:
            self._sources = []
        return [m for m in taken if (m.key, m.step) not in self.logged]

    def flush(self) -> None:
        """Send every buffered write, waiting out an outage (up to ``max_outage_s``)."""
        if self.run_id:
            drained = self._drained()
            if drained:
                self._pending.append((drained, []))
            self._send(wait=True)

    def spool_to(self, path: Path) -> None:
        """Keep the writes a stopped job could not send in ``path`` (beside its checkpoint), and
        send first those that a stopped earlier attempt of this run left there."""
        self._spool = path
        if not self.run_id or not path.exists():
            return
        restored: list[_Batch] = [
            (
                [Metric(*m) for m in batch["metrics"] if (m[0], m[3]) not in self.logged],
                [RunTag(*t) for t in batch["tags"]],
            )
            for batch in json.loads(path.read_text())
        ]
        self._pending[:0] = restored
        # Steps replayed from the checkpoint that the spool already holds are not logged twice.
        self.logged |= {(m.key, m.step) for metrics, _ in restored for m in metrics}
        log.info("Sending %d writes that the stopped run could not send.", len(restored))
        self._send(wait=False)

    def end(self, status: int, error: str | None, wait: bool = True) -> None:
        """Close the run: buffered writes sent, the error tag set, the status recorded.

        A job stopped by an outage, or failing while the server is away, does not wait for it:
        its run stays RUNNING and the unsent writes stay in the spool, for ``resume=true``.
        Without ``wait`` (a job stopped by a signal, which has seconds before SIGKILL) nothing
        waits either: one try, and what the server does not take is spooled.
        """
        last = self._drained(stop=True)
        if not self.run_id or self.stopped:
            return
        if last:
            self._pending.append((last, []))
        if error is not None:
            self._pending.append(([], [RunTag(names.ERROR_TAG, redact(error)[:5000])]))
        if not wait or (error is not None and self._down_since is not None):
            # One retry if due, never a wait: the job's own error is what the user sees.
            with contextlib.suppress(TrackingOutage):
                self._send(wait=False)
            if self._down_since is not None:
                self._keep_pending()
                return
        assert self._client is not None
        terminate = partial(self._client.set_terminated, self.run_id, RunStatus.to_string(status))
        if wait:
            self._deliver(terminate)
        elif not self._attempt(terminate):
            self._keep_pending()

    # Delivery.

    def _attempt(self, write: Callable[[], object]) -> bool:
        """One try of ``write``; False if the server did not answer (the outage is noted)."""
        started = time.monotonic()
        try:
            with store_lock():
                write()
        except Exception as e:
            if not (server.is_http(self._uri) and server.is_outage(e)):
                raise
            self._last_try = time.monotonic()
            if self._down_since is None:
                self._down_since = started
                log.warning(
                    "The MLflow server at %s does not answer (%s). Metrics wait in memory and "
                    "are sent when it is back; the job stops if it stays away longer than "
                    "tracking.max_outage_s=%g s.",
                    redact(self._uri),
                    one_line(e)[:200],
                    self.max_outage_s,
                )
            return False
        if self._down_since is not None:
            log.warning(
                "The MLflow server answers again after %.0f s; sending %d buffered writes.",
                time.monotonic() - self._down_since,
                len(self._pending),
            )
            self._down_since = None
        return True

    def _send(self, wait: bool) -> None:
        """Send buffered writes in order. During an outage, without ``wait``, return at once
        unless a retry is due (training goes on); with ``wait``, block until they are sent."""
        while self._pending:
            if self._down_since is not None and not self._server_back(wait):
                return
            metrics, tags = self._pending[0]
            assert self._client is not None
            write = partial(
                self._client.log_batch, self.run_id, metrics=metrics, tags=tags, synchronous=True
            )
            if self._attempt(write):
                self._pending.pop(0)
            elif not wait:
                return
        if self._spool is not None and self._spool.exists():
            self._spool.unlink()

    def _deliver(self, write: Callable[[], object]) -> None:
        """A write that cannot be buffered (artifacts, params, the run's end): after everything
        buffered, waiting out an outage up to ``max_outage_s``."""
        self._send(wait=True)
        while not self._attempt(write):
            self._server_back(wait=True)

    def _server_back(self, wait: bool) -> bool:
        """During an outage: whether the server answers a retry now. Retries are at most every
        ``RETRY_EVERY_S``; with ``wait``, sleep until one succeeds. Past the limit: stop."""
        assert self._down_since is not None
        while True:
            away = time.monotonic() - self._down_since
            if away > self.max_outage_s:
                self._stop(away)
            due = self._last_try + server.RETRY_EVERY_S - time.monotonic()
            if due > 0:
                if not wait:
                    return False
                time.sleep(min(due, self.max_outage_s - away + 0.1))
                continue
            self._last_try = time.monotonic()
            if server.answers(self._uri):
                return True
            if not wait:
                return False

    def _stop(self, away: float) -> None:
        self.stopped = True
        kept = self._keep_pending()
        raise TrackingOutage(
            f"tracking.uri={redact(self._uri)}: the MLflow server has not answered for "
            f"{away:.0f} s (tracking.max_outage_s={self.max_outage_s:g}), so the job stopped"
            f"{kept}. Rerun the same command with resume=true once the server is back."
        )

    def _keep_pending(self) -> str:
        """Write the unsent writes to the spool; says what was kept, for the stop message."""
        if self._spool is None:
            return ""
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        batches = [
            {
                "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
                "tags": [[t.key, t.value] for t in tags],
            }
            for metrics, tags in self._pending
        ]
        write_text_atomically(self._spool, json.dumps(batches))
        return f"; its checkpoint and {len(batches)} unsent writes are kept in {self._spool.parent}"


@dataclass
class JobContext:
    """Where a job sits: its output dir and, inside a sweep, the sweep's id and parent run."""

    output_dir: Path
    sweep_id: str | None = None
    parent_run_id: str | None = None
    job_num: int | None = None
    overrides: list[str] = field(default_factory=list)
    # Set by run_experiment on the main process: the job's MLflow run and its experiment.
    run_id: str | None = None
    experiment_id: str | None = None


def job_tags(job: JobContext, job_key: str, init: str, model: str) -> dict[str, str]:
    """The tags a job's run is found by: its role and identity, what it trains, its sweep."""
    tags = {
        names.ROLE_TAG: names.ROLE_JOB,
        names.JOB_KEY_TAG: job_key,
        names.INIT_TAG: init,
        names.MODEL_TAG: model,
    }
    if job.sweep_id:
        tags |= {names.SWEEP_TAG: job.sweep_id, names.JOB_NUM_TAG: str(job.job_num)}
        tags[names.OVERRIDES_TAG] = " ".join(job.overrides)[:5000]
    if job.parent_run_id:
        tags[names.PARENT_TAG] = job.parent_run_id
    return tags


def _newest(experiment_id: str, query: str) -> Run | None:
    with store_lock():
        runs = search_all(MlflowClient(), experiment_id, query, limit=1)
    return runs[0] if runs else None


def find_job_run(experiment_id: str, job_key: str) -> Run | None:
    """The newest run of the same job (same ``job_key`` tag), if any."""
    return _newest(experiment_id, f"tags.{names.JOB_KEY_TAG} = '{job_key}'")


def finished_job_metrics(previous: Run | None, is_main: bool) -> dict[str, float] | None:
    """With ``resume=true``, a job whose run already FINISHED is skipped: its final metrics
    (``test_*``, ``best_*``), after removing a checkpoint a job killed after its run was marked
    FINISHED may have left behind. None when the job is to run."""
    if previous is None or previous.info.status != "FINISHED":
        return None
    log.info("Skipping: this job already finished in MLflow run %s.", previous.info.run_id)
    folder = Path(previous.data.tags.get(names.CHECKPOINT_DIR_TAG, ""))
    if is_main and folder.name == previous.info.run_id and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    metrics = previous.data.metrics
    return {k: v for k, v in metrics.items() if k.startswith(("test_", names.BEST_PREFIX))}


def _logged_steps(run: Run) -> set[tuple[str, int]]:
    client = MlflowClient()
    return {
        (key, m.step)
        for key in run.data.metrics
        for m in client.get_metric_history(run.info.run_id, key)
    }


@contextlib.contextmanager
def tracked_run(  # noqa: PLR0913 - what a new run is created with, and the run to resume instead
    experiment_id: str | None,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    tracking: TrackingConfig,
    resume: Run | None = None,
) -> Iterator[RunLogger]:
    """One MLflow run per job, always closed: FINISHED, FAILED (reason in the error tag) or
    KILLED; left RUNNING only when the server went away (``resume=true`` continues it).

    ``resume`` reopens that run instead, and the resume-count tag counts the resumptions. With
    ``experiment_id=None`` (non-main processes) nothing is logged.
    """
    if experiment_id is None:
        yield RunLogger(None)
        return
    client = MlflowClient()
    with store_lock():
        if resume is None:
            run = client.create_run(experiment_id, run_name=run_name, tags=redact_tree(dict(tags)))
            logged: set[tuple[str, int]] = set()
        else:
            run = resume
            _reopen(client, run)
            if names.ERROR_TAG in resume.data.tags:
                client.delete_tag(run.info.run_id, names.ERROR_TAG)
            logged = _logged_steps(resume)
    logger = RunLogger(run.info.run_id, logged, tracking.max_outage_s)
    status, error, wait = RunStatus.FAILED, None, True
    try:
        logger.heartbeat(force=True)
        # A resumed run keeps its params (MLflow forbids changing them); a run killed before
        # they were all logged gets the rest.
        done = set() if resume is None else set(resume.data.params)
        missing = {k: v for k, v in params.items() if k not in done}
        if missing:
            logger.params(missing)
        yield logger
        status = RunStatus.FINISHED
    except Stopped as stop:
        # A signal: the checkpoint at its step is written; close without waiting (stopping.py).
        status, wait, stop.run_id = RunStatus.KILLED, False, logger.run_id
        logger.tags({names.STOPPED_TAG: stop.tag()})
        raise
    except KeyboardInterrupt:
        status, error = RunStatus.KILLED, "interrupted"
        raise
    except BaseException as e:
        error = f"{type(e).__name__}: {one_line(e)}"
        raise
    finally:
        with deferred():
            logger.end(status, error, wait)


def fail_run(run_id: str, error: str) -> None:
    """Mark a closed run FAILED with the reason in its error tag: a job that was stopped and
    cannot go on by itself (a cluster job not requeued)."""
    client = MlflowClient()
    with store_lock():
        client.set_tag(run_id, names.ERROR_TAG, redact(error)[:5000])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))


def find_sweep_run(experiment_id: str, sweep_key: str) -> Run | None:
    """The newest parent run of a sweep with the same overrides (``sweep_key`` tag), if any."""
    return _newest(
        experiment_id,
        f"tags.`{names.ROLE_TAG}` = '{names.ROLE_SWEEP}' "
        f"and tags.`{names.SWEEP_KEY_TAG}` = '{sweep_key}'",
    )


def reopen_sweep_run(run: Run) -> None:
    """Mark a resumed sweep's parent run RUNNING again and count the resumption."""
    client = MlflowClient()
    with store_lock():
        _reopen(client, run)
        client.set_tag(run.info.run_id, names.HEARTBEAT_TAG, heartbeat_now())


def _reopen(client: MlflowClient, run: Run) -> None:
    """A resumed run (a job's or a sweep's) is RUNNING again and counts its resumptions."""
    client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    count = int(run.data.tags.get(names.RESUME_COUNT_TAG, "0")) + 1
    client.set_tag(run.info.run_id, names.RESUME_COUNT_TAG, str(count))


def create_sweep_run(experiment_id: str, sweep_id: str, tags: Mapping[str, str]) -> str:
    """A parent run that groups a sweep's jobs in the MLflow UI."""
    client = MlflowClient()
    with store_lock():
        run = client.create_run(
            experiment_id,
            run_name=f"sweep {sweep_id}",
            tags=redact_tree(
                {
                    names.SWEEP_TAG: sweep_id,
                    names.ROLE_TAG: names.ROLE_SWEEP,
                    names.HEARTBEAT_TAG: heartbeat_now(),
                    **tags,
                }
            ),
        )
    return run.info.run_id


def end_sweep_run(
    run_id: str,
    failed: bool,
    summary_md: str,
    max_outage_s: float = TrackingConfig.max_outage_s,
    stopped_by: str | None = None,
) -> None:
    """Close a sweep's parent run with its summary; through a server outage as a job's writes
    go (``RunLogger``): past ``max_outage_s`` it raises ``TrackingOutage`` and the run stays
    RUNNING, for ``resume=true`` to reopen and close. A sweep stopped by a signal
    (``stopped_by``) ends KILLED and waits for nothing: the summary is logged if the server
    answers."""
    logger = RunLogger(run_id, max_outage_s=max_outage_s)
    if stopped_by is not None:
        logger.tags({names.STOPPED_TAG: stopped_by})
        if logger.answering:
            logger.text(summary_md, names.SWEEP_SUMMARY_ARTIFACT)
        logger.end(RunStatus.KILLED, None, wait=False)
        return
    logger.text(summary_md, names.SWEEP_SUMMARY_ARTIFACT)
    logger.end(RunStatus.FAILED if failed else RunStatus.FINISHED, None)
