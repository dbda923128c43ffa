"""What the reading commands share: runs by id or by sweep, a run's logged model, and the one
rule that picks the best run.

A logged model is loaded from safetensors only, and never with the model's own code: anyone who
can write to the store can change an artifact, and pickle weights (``pytorch_model.bin``) or
remote code would run whatever they hold on the reader's machine.

The best run is chosen on validation numbers only, so the test set never picks a model: the
score the job monitored for early stopping (``best_<trainer.monitor>``), then validation
macro-F1, then validation loss, then the lowest job number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.artifacts import download_artifacts
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from emotion_lab.errors import ModelError, TrackingError, one_line
from emotion_lab.store import names

# How the best run is chosen, in words, for reports that name their choice.
SELECTION_RULE = (
    "highest validation score the jobs monitored (trainer.monitor; lowest for val_loss), "
    "ties broken by validation macro-F1, then validation loss, then job order"
)
_TIE_BREAKS = ("val_macro_f1", "val_loss")

# How every reading command calls ``from_pretrained`` on a logged model.
SAFE_LOADING: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": False}
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def get_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as e:
        raise TrackingError(
            f"run_id={run_id}: no such run in the MLflow store at {client.tracking_uri} "
            f"({one_line(e)}). Copy the id from the compare table or the run page in the MLflow "
            "UI, and check tracking.uri."
        ) from e


def search_all(
    client: MlflowClient, experiment_id: str, query: str, limit: int | None = None
) -> list[Run]:
    """Runs matching ``query``, newest first; every page unless ``limit``."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=query,
            order_by=["attributes.start_time DESC"],
            max_results=limit or 1000,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if limit or not token:
            return runs


def sweep_jobs_query(sweep_id: str, finished_only: bool = False) -> str:
    query = (
        f"tags.`{names.SWEEP_TAG}` = '{sweep_id}' and tags.`{names.ROLE_TAG}` = '{names.ROLE_JOB}'"
    )
    return query + (" and attributes.status = 'FINISHED'" if finished_only else "")


def job_num(run: Run) -> int:
    value = run.data.tags.get(names.JOB_NUM_TAG, "")
    return int(value) if value.isdigit() else -1


def monitor_of(run: Run) -> str:
    return run.data.params.get(names.MONITOR_PARAM, "val_accuracy")


def selection_key(metrics: Mapping[str, float], monitor: str) -> tuple[float, ...]:
    """Larger is better: the monitored validation score, then the tie-breaks."""

    def value(name: str) -> float:
        v = metrics.get(names.BEST_PREFIX + name)
        if v is None or math.isnan(v):
            return -math.inf
        return -v if name == "val_loss" else v

    return (value(monitor), *(value(k) for k in _TIE_BREAKS))


def best_run(runs: Sequence[Run]) -> Run | None:
    """The FINISHED run that validation prefers (see the module docstring), or None."""
    done = [r for r in runs if r.info.status == "FINISHED"]
    if not done:
        return None
    return max(
        sorted(done, key=job_num, reverse=True),
        key=lambda r: selection_key(r.data.metrics, monitor_of(r)),
    )


def check_safe_weights(client: MlflowClient, run_id: str) -> None:
    """Refuse a ``model/`` artifact without safetensors weights (see the module docstring)."""
    files = {Path(a.path).name for a in client.list_artifacts(run_id, names.MODEL_ARTIFACT)}
    if files & set(SAFE_WEIGHTS):
        return
    others = sorted(f for f in files if not f.endswith((".json", ".txt", ".model")))
    holds = f"it holds {', '.join(others)}" if others else "it holds no weights"
    raise ModelError(
        f"run {run_id}: its {names.MODEL_ARTIFACT}/ artifact has no model.safetensors ({holds}); "
        "logged models are loaded from safetensors only, because pickle weights can run code "
        "when loaded. Pick another run, or retrain this one."
    )


def load_logged_model(client: MlflowClient, run_id: str, dst: Path | None = None) -> Path:
    """Download a run's ``model/`` artifact (the best epoch's weights and tokenizer), after
    checking that it holds safetensors weights; load it with ``SAFE_LOADING``."""
    run = get_run(client, run_id)
    if names.MODEL_ARTIFACT not in {a.path for a in client.list_artifacts(run_id)}:
        why = "it was trained with tracking.log_model=false"
        if run.info.status != "FINISHED":
            error = run.data.tags.get(names.ERROR_TAG, "no error tag").rstrip(".")
            why = f"its status is {run.info.status}: {error}"
        raise ModelError(
            f"run {run_id} ({run.info.run_name}) has no {names.MODEL_ARTIFACT}/ artifact: "
            f"{why}. Pick a finished run from `python -m emotion_lab.compare`."
        )
    check_safe_weights(client, run_id)
    if dst is not None:
        dst.mkdir(parents=True, exist_ok=True)
    path = download_artifacts(
        run_id=run_id,
        artifact_path=names.MODEL_ARTIFACT,
        dst_path=None if dst is None else str(dst),
        tracking_uri=client.tracking_uri,
    )
    return Path(path)
