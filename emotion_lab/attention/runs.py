"""The MLflow side: find the runs to explain, fetch their models, log the analysis back to them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from emotion_lab.attention.stats import HeadStats
from emotion_lab.errors import TrackingError
from emotion_lab.tracking import ROLE_TAG, SWEEP_TAG, one_line, resolve_uri

PARENT_TAG = "mlflow.parentRunId"
# MLflow takes at most 1000 metrics per call.
BATCH = 1000


@dataclass
class RunRef:
    run_id: str
    name: str
    init: str | None
    parent_run_id: str | None


def open_store(uri: str) -> MlflowClient:
    """A client of an existing store: opening a missing sqlite file would create an empty one."""
    resolved = resolve_uri(uri)
    prefix = "sqlite:///"
    if resolved.startswith(prefix) and not Path(resolved[len(prefix) :]).is_file():
        raise TrackingError(
            f"tracking.uri={uri}: no MLflow store at {resolved[len(prefix) :]}. Run from the "
            "folder you trained in, or set tracking.uri=sqlite:////abs/path/outputs/mlflow.db."
        )
    return MlflowClient(resolved)


def get_run(client: MlflowClient, run_id: str) -> RunRef:
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise TrackingError(
            f"run_id={run_id}: no such run in tracking.uri={client.tracking_uri} "
            f"({one_line(e)}). Set tracking.uri to the store the run was logged to."
        ) from e
    return RunRef(
        run_id,
        run.info.run_name or run_id,
        run.data.params.get("init"),
        run.data.tags.get(PARENT_TAG),
    )


def sweep_pair(client: MlflowClient, experiment: str, sweep_id: str) -> tuple[RunRef, RunRef]:
    """The best (by test accuracy) FINISHED scratch and pretrained jobs of a sweep."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TrackingError(
            f"tracking.experiment={experiment} does not exist in {client.tracking_uri}."
        )
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.{SWEEP_TAG} = '{sweep_id}' and tags.`{ROLE_TAG}` = 'job' "
        "and attributes.status = 'FINISHED'",
    )
    best = {}
    for run in runs:
        init = run.data.params.get("init")
        score = run.data.metrics.get("test_accuracy", float("-inf"))
        if init not in best or score > best[init][0]:
            best[init] = (score, run)
    if not {"scratch", "pretrained"} <= set(best):
        raise TrackingError(
            f"sweep_id={sweep_id}: a comparison needs a FINISHED init=scratch and init=pretrained "
            f"job; found {len(runs)} finished job(s) with init {sorted(map(str, best))}. "
            "Pass run_id=... compare_run_id=... to compare two runs of your choice."
        )
    return get_run(client, best["scratch"][1].info.run_id), get_run(
        client, best["pretrained"][1].info.run_id
    )


def download_model(client: MlflowClient, run: RunRef, dst: Path) -> Path:
    if not client.list_artifacts(run.run_id, "model"):
        raise TrackingError(
            f"run {run.name} ({run.run_id}) has no model/ artifact: it was trained with "
            "tracking.log_model=false, or failed before the end."
        )
    dst.mkdir(parents=True, exist_ok=True)
    uri = client.tracking_uri
    path = download_artifacts(
        run_id=run.run_id, artifact_path="model", dst_path=str(dst), tracking_uri=uri
    )
    return Path(path)


def comparison_targets(a: RunRef, b: RunRef) -> list[str]:
    """The sweep's parent run when both runs belong to it, else both runs."""
    if a.parent_run_id and a.parent_run_id == b.parent_run_id:
        return [a.parent_run_id]
    return [a.run_id, b.run_id]


def stats_metrics(stats: HeadStats, per_head: bool) -> list[Metric]:
    """Per-layer means as ``attn_<stat>_L<layer>`` (for Compare), again as ``attn_<stat>`` with
    step = layer (a line over depth in the UI), and per head if asked."""
    now = int(time.time() * 1000)
    metrics = [Metric("attn_sink_share", stats.sink_share, now, 0)]
    per_layer = stats.per_layer()
    for stat in stats.panels():
        for layer, value in per_layer[stat].items():
            metrics.append(Metric(f"attn_{stat}_L{layer}", float(value), now, 0))
            metrics.append(Metric(f"attn_{stat}", float(value), now, int(layer)))
        if per_head:
            for _, row in stats.table.iterrows():
                name = f"attn_{stat}_L{int(row.layer)}_H{int(row['head'])}"
                metrics.append(Metric(name, float(row[stat]), now, 0))
    return metrics


def log_analysis(
    client: MlflowClient, run_id: str, local_dir: Path, artifact_path: str, metrics: list[Metric]
) -> None:
    client.log_artifacts(run_id, str(local_dir), artifact_path)
    for start in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + BATCH])
