"""What the reading commands share: runs by id or by sweep, a run's logged model, and the one
rule that picks the best run, and from it the one rule that picks the two configurations to
compare.

A logged model is loaded from safetensors only, and never with the model's own code: anyone who
can write to the store can change an artifact, and pickle weights (``pytorch_model.bin``) or
remote code would run whatever they hold on the reader's machine.

The best run is chosen on validation numbers only, so the test set never picks a model: the
score the job monitored for early stopping (``best_<trainer.monitor>``), then validation
macro-F1, then validation loss, then the lowest job number. A search trial that its pruner
stopped is never chosen. A group of runs (one configuration
over several seeds) is scored by the mean of each of these over its finished runs.

The pair: a sweep's runs are grouped into configurations (every swept key but the seed); for
each value of the compared key (``init`` where it was swept, else the first swept key) the best
configuration is found, and the overall best is compared with the best of the other values.
``compare`` compares the two configurations over their seeds; ``attention``, which needs one
model per side, takes the best seed's run of each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from mlflow.artifacts import download_artifacts
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from emotion_lab.config import Config
from emotion_lab.errors import ConfigError, ModelError, TrackingError, one_line
from emotion_lab.store import names
from emotion_lab.store.names import SEED_PARAM, flatten

# How the best run is chosen, in words, for reports that name their choice.
SELECTION_RULE = (
    "highest validation score the jobs monitored (trainer.monitor; lowest for val_loss), "
    "ties broken by validation macro-F1, then validation loss, then job order; "
    "a configuration run with several seeds by the mean of each over its seeds"
)
_TIE_BREAKS = (names.VAL_MACRO_F1, names.VAL_LOSS)

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
    return run.data.params.get(names.MONITOR_PARAM, names.VAL_ACCURACY)


def selection_key(metrics: Mapping[str, float], monitor: str) -> tuple[float, ...]:
    """Larger is better: the monitored validation score, then the tie-breaks."""

    def value(name: str) -> float:
        v = metrics.get(names.BEST_PREFIX + name)
        if v is None or math.isnan(v):
            return -math.inf
        return -v if name == names.VAL_LOSS else v

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


@cache
def _config_keys() -> tuple[str, ...]:
    """Flattened keys of the training schema, in schema order."""
    tree = OmegaConf.to_container(OmegaConf.structured(Config), enum_to_str=True)
    return tuple(flatten(tree))  # type: ignore[arg-type]


def _config_rank(key: str) -> int | None:
    """Position of a param in the schema; None for params a job adds at run time
    (num_parameters, device, ...), which follow from the config rather than being chosen."""
    for i, name in enumerate(_config_keys()):
        # Dict-valued keys (model.config_overrides) are flattened further in the params.
        if key == name or key.startswith(name + "."):
            return i
    return None


# Config keys that say how a job ran, not what it varied: a search trial's number and study.
_BOOKKEEPING = ("trial.",)


def swept_keys(jobs: Sequence[Run]) -> list[str]:
    """Config params that differ between the jobs (absent counts as a value): top-level keys
    (init, lr, seed) first, then in schema order."""
    keys = {k for run in jobs for k in run.data.params}
    swept = [
        k
        for k in keys
        if _config_rank(k) is not None
        and not k.startswith(_BOOKKEEPING)
        and len({run.data.params.get(k) for run in jobs}) > 1
    ]
    return sorted(swept, key=lambda k: ("." in k, _config_rank(k), k))


def group_keys(swept: Sequence[str]) -> list[str]:
    """The keys that define a configuration: every swept key except the seed."""
    return [k for k in swept if k != SEED_PARAM]


@dataclass
class Group:
    """One configuration: its key values and its runs (all of them; statistics use the
    finished ones), in job order."""

    values: dict[str, str]
    runs: list[Run]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if _done(r)]


def make_groups(jobs: Sequence[Run], keys: Sequence[str]) -> list[Group]:
    """Groups in the order of their first job."""
    groups: dict[tuple[str, ...], Group] = {}
    for run in jobs:
        values = {k: run.data.params.get(k, "") for k in keys}
        groups.setdefault(tuple(values.values()), Group(values, [])).runs.append(run)
    return list(groups.values())


def compared_key(keys: Sequence[str]) -> str:
    """The key whose values the default pair sets against each other: ``init`` where it was
    swept, else the first swept key."""
    if not keys:
        raise ConfigError("nothing but the seed was swept: there are no two configurations.")
    return names.INIT_PARAM if names.INIT_PARAM in keys else keys[0]


@dataclass
class PairSide:
    """One side of the default pair: the best configuration among ``candidates``, those with
    ``key=value``."""

    key: str
    value: str
    candidates: list[Group]
    group: Group


def best_pair(groups: Sequence[Group], keys: Sequence[str]) -> tuple[PairSide, PairSide]:
    """The default pair (see the module docstring), the overall best first."""
    key = compared_key(keys)
    values = list(dict.fromkeys(g.values[key] for g in groups))
    if len(values) < 2:
        raise ConfigError(f"{key} has one value only: there are no two configurations to compare.")
    sides = []
    for value in values:
        candidates = [g for g in groups if g.values[key] == value]
        chosen = best_group([g.runs for g in candidates])
        if chosen is None:
            raise TrackingError(
                f"best of {key}={value}: no configuration has a finished run to compare."
            )
        sides.append(PairSide(key, value, candidates, candidates[chosen]))
    winner = best_group([s.group.runs for s in sides])
    assert winner is not None  # every side has a finished run
    rest = [s for i, s in enumerate(sides) if i != winner]
    runner_up = best_group([s.group.runs for s in rest])
    assert runner_up is not None
    return sides[winner], rest[runner_up]


def sweep_pair_runs(jobs: Sequence[Run]) -> tuple[tuple[Run, Run], str]:
    """The default pair's runs for a reading command that needs one model per side: the best
    seed's run of each configuration, in the sweep's order, and a line that says which and why."""
    jobs = sorted(jobs, key=lambda r: (job_num(r), r.info.start_time))
    keys = group_keys(swept_keys(jobs))
    groups = make_groups(jobs, keys)
    pair = list(best_pair(groups, keys))
    # In the sweep's order (scratch before pretrained when init is swept so), not by score.
    order = list(dict.fromkeys(g.values[pair[0].key] for g in groups))
    pair.sort(key=lambda side: order.index(side.value))
    runs = []
    for side in pair:
        run = best_run(side.group.runs)
        assert run is not None  # best_pair picks groups with a finished run
        runs.append(run)
    a, b = runs
    why = (
        f"Picked {a.info.run_name} and {b.info.run_name}: the best seed of the best "
        f"configuration of each {pair[0].key} ({pair[0].group.label}; {pair[1].group.label}) "
        f"by the {SELECTION_RULE}."
    )
    return (a, b), why


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
