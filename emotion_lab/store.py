"""Read-only access to an MLflow store that training already filled.

Reading commands must never create an empty store or experiment by accident (a typo'd
``tracking.uri`` would otherwise "succeed" with nothing to show), so they open it here.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from emotion_lab.config import TrackingConfig
from emotion_lab.errors import TrackingError
from emotion_lab.tracking import resolve_uri


def open_experiment(cfg: TrackingConfig) -> tuple[MlflowClient, Experiment]:
    uri = resolve_uri(cfg.uri)
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        db = Path(uri[len(prefix) :])
        if not db.is_file():
            raise TrackingError(
                f"tracking.uri={cfg.uri}: no MLflow store at {db}. Run from the folder you "
                "trained in, or set tracking.uri to the store (e.g. sqlite:////abs/mlflow.db)."
            )
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(cfg.experiment)
        names = [] if experiment is not None else [e.name for e in client.search_experiments()]
    except MlflowException as e:
        raise TrackingError(f"tracking.uri={cfg.uri}: cannot read the MLflow store: {e}") from e
    if experiment is None:
        raise TrackingError(
            f"tracking.experiment={cfg.experiment}: no such experiment in {cfg.uri} "
            f"(it has: {', '.join(names) or 'none'})."
        )
    return client, experiment


def get_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as e:
        raise TrackingError(
            f"run_id={run_id}: no such run in the MLflow store at {client.tracking_uri} "
            "(copy the id from the compare table or the run page in the MLflow UI, and check "
            "tracking.uri)."
        ) from e
