"""Where the store is and how to open it: for writing (jobs, sweeps) or for reading.

The default store is an sqlite file. Several jobs may open it at once (parallel launchers), and
sqlite races on schema migration and experiment creation, so writes hold a file lock. Reading
commands must never create an empty store or experiment by accident (a typo'd ``tracking.uri``
would otherwise "succeed" with nothing to show), so they open it with ``open_for_reading``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.entities import Experiment
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from emotion_lab.config import TrackingConfig
from emotion_lab.errors import TrackingError, one_line
from emotion_lab.redaction import without_userinfo
from emotion_lab.store import server

SQLITE = "sqlite:///"
# What `mlflow ui` serves on by default, for links into a local store.
LOCAL_UI = "http://127.0.0.1:5000"


def resolve_uri(uri: str) -> str:
    """Make a relative sqlite path absolute, so jobs agree whatever their working directory."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        return SQLITE + str(Path(uri[len(SQLITE) :]).resolve())
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def ui_address(uri: str) -> str:
    """Where a person opens the UI of this store: the server itself (the browser asks for any
    credentials), or a local `mlflow ui`."""
    return without_userinfo(uri.rstrip("/")) if server.is_http(uri) else LOCAL_UI


@contextlib.contextmanager
def store_lock(uri: str | None = None) -> Iterator[None]:
    """Held around every write to an sqlite store; a no-op for a server."""
    db = sqlite_path(uri or mlflow.get_tracking_uri())
    if db is None:
        yield
        return
    with FileLock(str(db) + ".lock", timeout=300):
        yield


def open_for_writing(cfg: TrackingConfig) -> str:
    """Point MLflow at the store and return the experiment id, creating both if needed."""
    uri = resolve_uri(cfg.uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"tracking.uri={cfg.uri}: cannot create {db.parent}: {e}") from e
    mlflow.set_tracking_uri(uri)
    server.prepare(uri)
    try:
        with store_lock(uri):
            if db is not None and not db.exists():
                _copy_empty_store(db)
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
        raise TrackingError(
            f"tracking.uri={cfg.uri}: cannot open the MLflow store: {one_line(e)}"
        ) from e


def _empty_store() -> Path | None:
    """An sqlite store with MLflow's schema and nothing in it, made once per MLflow version in
    the user's cache (None where it cannot be made there).

    A new store otherwise runs every one of MLflow's schema migrations, 1.5 s of a tiny job's 9
    on a 2-core Xeon (docs/benchmarks.md, "Overhead"): paid by every job that starts in a new
    folder, and by every test. The template holds only the migrated tables: MLflow adds its Default
    experiment, with its artifact location, when it opens the copy.
    """
    # Imported here: the migrations' modules are needed only to make the template.
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emotion_lab"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if template.is_file():
        return template
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            part = Path(tmp) / template.name
            engine = sqlalchemy.create_engine(SQLITE + str(part))
            try:
                db_utils._initialize_tables(engine)
            finally:
                engine.dispose()
            os.replace(part, template)  # atomic: a concurrent maker writes the same tables
    except Exception:  # any failure: MLflow creates the store itself, and reports its own errors
        return None
    return template


def _copy_empty_store(db: Path) -> None:
    """Start a new sqlite store as a copy of the empty template (caller holds the store lock);
    without one, MLflow creates the store itself when the client first opens it."""
    template = _empty_store()
    if template is None:
        return
    part = db.with_name(f".{db.name}.{os.getpid()}.part")
    shutil.copyfile(template, part)
    os.replace(part, db)


def open_client(uri: str) -> MlflowClient:
    """A client of an existing store: opening a missing sqlite file would create an empty one."""
    resolved = resolve_uri(uri)
    db = sqlite_path(resolved)
    if db is not None and not db.is_file():
        raise TrackingError(
            f"tracking.uri={uri}: no MLflow store at {db}. Run from the folder you trained in, "
            "or set tracking.uri to the store (e.g. sqlite:////abs/path/outputs/mlflow.db)."
        )
    server.prepare(resolved)
    # MLflow resolves a run's logged model (runs:/<id>/model) with the default client.
    mlflow.set_tracking_uri(resolved)
    return MlflowClient(resolved)


def open_for_reading(cfg: TrackingConfig) -> tuple[MlflowClient, Experiment]:
    """The client and experiment of a store that training already filled."""
    client = open_client(cfg.uri)
    try:
        experiment = client.get_experiment_by_name(cfg.experiment)
        names = [] if experiment is not None else [e.name for e in client.search_experiments()]
    except MlflowException as e:
        raise TrackingError(
            f"tracking.uri={cfg.uri}: cannot read the MLflow store: {one_line(e)}"
        ) from e
    if experiment is None:
        raise TrackingError(
            f"tracking.experiment={cfg.experiment}: no such experiment in {cfg.uri} "
            f"(it has: {', '.join(names) or 'none'})."
        )
    return client, experiment
