"""The MLflow side: find the runs to explain, fetch their models, log the analysis back to them."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from emotion_lab.attention.stats import HeadStats
from emotion_lab.config import DataConfig
from emotion_lab.errors import TrackingError, UserError
from emotion_lab.store import names
from emotion_lab.store.annotate import log_files, log_metrics
from emotion_lab.store.reader import get_run, search_all, sweep_jobs_query, sweep_pair_runs


@dataclass
class RunRef:
    run_id: str
    name: str
    init: str | None
    parent_run_id: str | None


def run_ref(client: MlflowClient, run_id: str) -> RunRef:
    run = get_run(client, run_id)
    return RunRef(
        run_id,
        run.info.run_name or run_id,
        run.data.params.get(names.INIT_PARAM),
        run.data.tags.get(names.PARENT_TAG),
    )


def sweep_pair(
    client: MlflowClient, experiment: str, sweep_id: str
) -> tuple[tuple[RunRef, RunRef], str]:
    """The runs of the pair ``compare`` compares by default, one model per side: the best seed of
    each configuration ``store.reader.best_pair`` picks (on validation only), and a line that
    says which and why."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TrackingError(
            f"tracking.experiment={experiment} does not exist in {client.tracking_uri}."
        )
    runs = search_all(client, found.experiment_id, sweep_jobs_query(sweep_id, finished_only=True))
    try:
        (a, b), why = sweep_pair_runs(runs)
    except UserError as e:
        raise TrackingError(
            f"sweep_id={sweep_id}: {e} Found {len(runs)} finished job(s). "
            "Pass run_id=... compare_run_id=... to compare two runs of your choice."
        ) from None
    return (run_ref(client, a.info.run_id), run_ref(client, b.info.run_id)), why


def run_data(client: MlflowClient, run_id: str) -> DataConfig | None:
    """The data config a run trained with (its config.yaml), so its texts, its own columns and
    its carved splits are sampled; None for a run that logged no config."""
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    if names.CONFIG_ARTIFACT not in artifacts:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = download_artifacts(
            run_id=run_id,
            artifact_path=names.CONFIG_ARTIFACT,
            dst_path=tmp,
            tracking_uri=client.tracking_uri,
        )
        logged = yaml.safe_load(Path(path).read_text())
    known = {f.name for f in dataclasses.fields(DataConfig)}
    data = {k: v for k, v in logged.get("data", {}).items() if k in known}
    merged = OmegaConf.merge(OmegaConf.structured(DataConfig), data)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


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


def log_analysis(  # noqa: PLR0913 - what goes where, and how long to wait out an outage
    client: MlflowClient,
    run_id: str,
    local_dir: Path,
    artifact_path: str,
    metrics: list[Metric],
    max_outage_s: float | None = None,
) -> None:
    log_files(client, run_id, [local_dir], artifact_path, max_outage_s)
    log_metrics(client, run_id, metrics, max_outage_s)
