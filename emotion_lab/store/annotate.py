"""The reading commands' writes: compare's report and registered models, attention's analysis.

They write to runs that training made, so they hold the same store lock (parallel writers of
one sqlite file) and wait out a server outage the same way (up to ``tracking.max_outage_s``,
then one line that says to rerun). This module is theirs: the readers never import the
training writer (``store.writer``), which carries a job's run lifecycle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from emotion_lab.config import TrackingConfig
from emotion_lab.errors import TrackingError, TrackingOutage, one_line
from emotion_lab.redaction import redact
from emotion_lab.store import server
from emotion_lab.store.connection import store_lock

log = logging.getLogger(__name__)

T = TypeVar("T")
# MLflow takes at most 1000 metrics per call.
METRICS_PER_CALL = 1000


def _write(
    client: MlflowClient, write: Callable[[], T], what: str, max_outage_s: float | None = None
) -> T:
    """``write()`` under the store lock; through a server outage of up to ``max_outage_s``."""
    limit = TrackingConfig.max_outage_s if max_outage_s is None else max_outage_s
    uri = client.tracking_uri
    down_since = None
    while True:
        try:
            with store_lock(uri):
                return write()
        except Exception as e:
            if not (server.is_http(uri) and server.is_outage(e)):
                raise
            now = time.monotonic()
            if down_since is None:
                down_since = now
                log.warning(
                    "The MLflow server at %s does not answer (%s); retrying %s for up to "
                    "tracking.max_outage_s=%g s.",
                    redact(uri),
                    one_line(e)[:200],
                    what,
                    limit,
                )
            if now - down_since > limit:
                raise TrackingOutage(
                    f"tracking.uri={redact(uri)}: the MLflow server has not answered for "
                    f"{now - down_since:.0f} s (tracking.max_outage_s={limit:g}) while "
                    f"{what}; rerun the command once it is back."
                ) from e
            time.sleep(server.RETRY_EVERY_S)


def log_files(
    client: MlflowClient,
    run_id: str,
    files: Sequence[Path],
    artifact_path: str,
    max_outage_s: float | None = None,
) -> None:
    """Files (or one folder's contents) as artifacts of ``run_id`` under ``artifact_path``."""
    for path in files:
        if path.is_dir():
            write = lambda p=path: client.log_artifacts(run_id, str(p), artifact_path)  # noqa: E731
        else:
            write = lambda p=path: client.log_artifact(run_id, str(p), artifact_path)  # noqa: E731
        _write(client, write, f"logging {path.name} to run {run_id}", max_outage_s)


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Sequence[Metric], max_outage_s: float | None = None
) -> None:
    for start in range(0, len(metrics), METRICS_PER_CALL):
        part = list(metrics[start : start + METRICS_PER_CALL])
        write = lambda m=part: client.log_batch(run_id, metrics=m)  # noqa: E731
        _write(client, write, f"logging metrics to run {run_id}", max_outage_s)


def register_version(  # noqa: PLR0913 - the version's fields, its alias, the outage limit
    client: MlflowClient,
    name: str,
    source: str,
    run_id: str,
    tags: dict[str, str],
    alias: str | None,
    max_outage_s: float | None = None,
) -> tuple[ModelVersion, ModelVersion | None]:
    """A new version of registered model ``name`` (created if missing), given ``alias``;
    returns it and the version that held the alias before (None if none did)."""

    def register() -> tuple[ModelVersion, ModelVersion | None]:
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        before = None
        if alias:
            try:
                before = client.get_model_version_by_alias(name, alias)
            except MlflowException:
                before = None
        version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
        return version, before

    try:
        return _write(client, register, f"registering {name!r}", max_outage_s)
    except MlflowException as e:
        raise TrackingError(f"register=true: cannot register {name!r}: {one_line(e)}") from e
