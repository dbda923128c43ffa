"""What the reading commands share: runs by id or by sweep, a run's logged model, and the one
rule that picks the best run.

A logged model is loaded from safetensors only, and never with the model's own code: anyone who
can write to the store can change an artifact, and pickle weights (``pytorch_model.bin``) or
remote code would run whatever they hold on the reader's machine.

The best run is chosen on validation numbers only, so the test set never picks a model: the
score the job monitored for early stopping (``best_<trainer.monitor>``), then validation
macro-F1, then validation loss, then the lowest job number. A search trial that its pruner
stopped is never chosen. A group of runs (one configuration
over several seeds) is scored by the mean of each of these over its finished runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
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
    "ties broken by validation macro-F1, then validation loss, then job order; "
    "a configuration run with several seeds by the mean of each over its seeds"
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


def group_selection_key(runs: Sequence[Run]) -> tuple[float, ...]:
    """``selection_key`` of a group of runs (a configuration over seeds): the mean of each
    component over its FINISHED runs; a group without one ranks last."""
    keys = [selection_key(r.data.metrics, monitor_of(r)) for r in runs if _done(r)]
    if not keys:
        return (-math.inf,) * (1 + len(_TIE_BREAKS))
    return tuple(float(sum(column) / len(keys)) for column in zip(*keys, strict=True))


def best_group(groups: Sequence[Sequence[Run]]) -> int | None:
    """Index of the group validation prefers (earliest on a complete tie), or None when no
    group has a finished run."""
    keys = [group_selection_key(g) for g in groups]
    if not keys or all(k[0] == -math.inf for k in keys):
        return None
    return max(range(len(keys)), key=lambda i: (keys[i], -i))


def decided_by(keys: Sequence[tuple[float, ...]], chosen: int, monitor: str) -> str:
    """Which part of the rule picked ``keys[chosen]`` over the others, in words: the monitored
    score, a tie-break (naming the scores it tied on), or the order."""
    order = (monitor, *_TIE_BREAKS)
    rivals = [k for i, k in enumerate(keys) if i != chosen]
    if not rivals:
        return "the only candidate"
    for depth, name in enumerate(order):
        rivals = [k for k in rivals if k[: depth + 1] == keys[chosen][: depth + 1]]
        if not rivals:
            tied = f" (tied on {', '.join(order[:depth])})" if depth else ""
            return f"decided by {name}{tied}"
    return f"decided by order (tied on {', '.join(order)})"


def _done(run: Run) -> bool:
    """Finished and tested: a search trial that its pruner stopped is FINISHED, but untested."""
    return run.info.status == "FINISHED" and names.PRUNED_TAG not in run.data.tags


def best_run(runs: Sequence[Run]) -> Run | None:
    """The FINISHED run that validation prefers (see the module docstring), or None."""
    done = [r for r in runs if _done(r)]
    if not done:
        return None
    # max keeps the first of equal keys: the lowest job number.
    return max(
        sorted(done, key=job_num),
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


# How a run that stopped sending heartbeats is shown, wherever runs are listed.
STALE_HINT = "stale: probably killed, rerun with resume=true"


@dataclass
class RunningRun:
    """A run MLflow holds as RUNNING, and how long it has been silent."""

    run: Run
    silent_s: float
    stale: bool

    @property
    def silence(self) -> str:
        """Time since the last heartbeat, in words."""
        return _duration(self.silent_s)

    def describe(self) -> str:
        state = STALE_HINT if self.stale else "alive"
        return f"{state} (last heartbeat {self.silence} ago)"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _last_heartbeat(run: Run) -> float:
    """Epoch seconds of the run's last heartbeat; its start for runs that never sent one."""
    beat = run.data.tags.get(names.HEARTBEAT_TAG)
    if beat:
        try:
            return datetime.fromisoformat(beat).timestamp()
        except ValueError:
            pass
    return run.info.start_time / 1000


def running_runs(
    client: MlflowClient,
    experiment_id: str,
    stale_after_s: float = names.STALE_AFTER_S,
    now: float | None = None,
) -> list[RunningRun]:
    """Every RUNNING run of the experiment, newest first, stale when silent for longer than
    ``stale_after_s``. A sweep's parent run is alive while one of its jobs is."""
    now = time.time() if now is None else now
    runs = search_all(client, experiment_id, "attributes.status = 'RUNNING'")
    last = {r.info.run_id: _last_heartbeat(r) for r in runs}
    for r in runs:
        parent = r.data.tags.get(names.PARENT_TAG)
        if parent in last:
            last[parent] = max(last[parent], last[r.info.run_id])
    found = []
    for r in runs:
        silent = max(now - last[r.info.run_id], 0.0)
        found.append(RunningRun(r, silent, silent > stale_after_s))
    return found


def stale_runs(
    client: MlflowClient, experiment_id: str, stale_after_s: float = names.STALE_AFTER_S
) -> list[RunningRun]:
    return [r for r in running_runs(client, experiment_id, stale_after_s) if r.stale]
