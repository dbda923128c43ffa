"""A sweep as MLflow recorded it: the parent run, the job runs, and their metric histories."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from emotion_lab.errors import TrackingError
from emotion_lab.store import names
from emotion_lab.store.names import ROLE_TAG, SWEEP_TAG
from emotion_lab.store.reader import job_num, search_all, sweep_jobs_query, swept_keys

# Per-epoch and per-step series the report plots or summarises.
HISTORY_KEYS = (
    "epoch",
    *names.MONITORS,
    "train_loss",
    "train_samples_per_s",
)


@dataclass
class SweepRuns:
    sweep_id: str
    parent: Run
    # Sorted by job number.
    jobs: list[Run]
    # Long form: run_id, key, step, value.
    history: pd.DataFrame
    # Config keys whose values differ between the jobs, most general first.
    swept: list[str]
    # The other sweeps whose jobs are pooled with this one's (``sweeps=[a,b]``), oldest first.
    pooled: list[str] = field(default_factory=list)


def find_parent(client: MlflowClient, experiment_id: str, sweep: str) -> Run:
    """``latest`` is the newest sweep parent run; anything else is a sweep id."""
    is_parent = f"tags.`{ROLE_TAG}` = '{names.ROLE_SWEEP}'"
    if sweep == "latest":
        found = search_all(client, experiment_id, is_parent, limit=1)
        if not found:
            raise TrackingError(
                "sweep=latest: this experiment has no sweep yet. Run one with "
                "`python -m emotion_lab -m KEY=A,B ...`, or check tracking.uri/tracking.experiment."
            )
        return found[0]
    query = f"{is_parent} and tags.`{SWEEP_TAG}` = '{sweep}'"
    # A quote cannot be in a sweep id, and would break the filter string.
    found = [] if "'" in sweep else search_all(client, experiment_id, query)
    if not found:
        recent = search_all(client, experiment_id, is_parent, limit=5)
        ids = ", ".join(r.data.tags.get(SWEEP_TAG, "?") for r in recent) or "none"
        raise TrackingError(f"sweep={sweep}: no such sweep in this experiment (newest: {ids}).")
    return found[0]


def _history(client: MlflowClient, jobs: list[Run]) -> pd.DataFrame:
    rows = [
        (run.info.run_id, key, m.step, m.value)
        for run in tqdm(jobs, desc="reading runs", unit="run", disable=len(jobs) < 2)
        for key in HISTORY_KEYS
        for m in client.get_metric_history(run.info.run_id, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def read_sweep(client: MlflowClient, experiment_id: str, sweep: str) -> SweepRuns:
    parent = find_parent(client, experiment_id, sweep)
    sweep_id = parent.data.tags[SWEEP_TAG]
    jobs = search_all(client, experiment_id, sweep_jobs_query(sweep_id))
    if not jobs:
        raise TrackingError(f"sweep {sweep_id} has no job runs in MLflow (did it start any?).")
    jobs.sort(key=lambda r: (job_num(r), r.info.start_time))
    return SweepRuns(sweep_id, parent, jobs, _history(client, jobs), swept_keys(jobs))


def read_sweeps(client: MlflowClient, experiment_id: str, sweeps: list[str]) -> SweepRuns:
    """Several sweeps as one: their jobs pooled (seeds added later join their configuration),
    under the newest sweep's parent run, which the report goes to."""
    parts = [read_sweep(client, experiment_id, s) for s in dict.fromkeys(sweeps)]
    parts.sort(key=lambda p: p.parent.info.start_time)
    newest = parts[-1]
    jobs = [job for part in parts for job in part.jobs]
    return SweepRuns(
        newest.sweep_id,
        newest.parent,
        jobs,
        pd.concat([part.history for part in parts], ignore_index=True),
        swept_keys(jobs),
        pooled=[part.sweep_id for part in parts[:-1]],
    )
