"""One row per job run: what was swept, how it ended, and its numbers as MLflow stored them."""

from __future__ import annotations

import math

import pandas as pd
from mlflow.entities import Run

from emotion_lab.compare.runs import SweepRuns
from emotion_lab.reports import markdown_table
from emotion_lab.store import names
from emotion_lab.store.reader import best_run, job_num

PRUNED = "PRUNED"

# Validation numbers are those of the best epoch (the one that was tested and logged).
METRICS = (
    names.BEST_EPOCH_METRIC,
    *names.SCORES,
    "wall_seconds",
    "train_samples_per_s",
)
_DECIMALS = {names.BEST_EPOCH_METRIC: 0, "wall_seconds": 1, "train_samples_per_s": 1}


def _at_best_epoch(history: pd.DataFrame, best_epoch: float | None) -> dict[str, float]:
    """Validation metrics logged at the step where ``epoch == best_epoch``."""
    if best_epoch is None:
        return {}
    epochs = history[history["key"] == "epoch"]
    steps = epochs["step"][epochs["value"] == best_epoch]
    if steps.empty:
        return {}
    at = history[history["step"] == steps.iloc[-1]]
    return dict(zip(at["key"], at["value"], strict=True))


def _row(run: Run, history: pd.DataFrame, swept: list[str]) -> dict[str, object]:
    metrics = run.data.metrics
    best = metrics.get(names.BEST_EPOCH_METRIC)
    at_best = _at_best_epoch(history, best)
    speed = history["value"][history["key"] == "train_samples_per_s"]
    return {
        "job": job_num(run),
        "run": run.info.run_name,
        # A search trial its pruner stopped is FINISHED in MLflow, untested: listed as pruned.
        "status": PRUNED if names.PRUNED_TAG in run.data.tags else run.info.status,
        **{key: run.data.params.get(key, "") for key in swept},
        names.BEST_EPOCH_METRIC: best,
        **{s: (at_best if s.startswith("val_") else metrics).get(s) for s in names.SCORES},
        "wall_seconds": metrics.get("wall_seconds"),
        # Mean over the epochs that ran.
        "train_samples_per_s": speed.mean() if not speed.empty else None,
        "run_id": run.info.run_id,
        "error": run.data.tags.get(names.ERROR_TAG, ""),
    }


def run_table(sweep: SweepRuns) -> pd.DataFrame:
    by_run = dict(iter(sweep.history.groupby("run_id")))
    empty = sweep.history.iloc[0:0]
    rows = [_row(r, by_run.get(r.info.run_id, empty), sweep.swept) for r in sweep.jobs]
    table = pd.DataFrame(rows)
    table[list(METRICS)] = table[list(METRICS)].astype(float)
    return table


def best_row(sweep: SweepRuns, table: pd.DataFrame) -> pd.Series | None:
    """The row of the run that validation prefers (``store.reader.SELECTION_RULE``); the test
    set never takes part in the choice."""
    run = best_run(sweep.jobs)
    if run is None:
        return None
    return table[table.run_id == run.info.run_id].iloc[0]


def cell(key: str, value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{_DECIMALS.get(key, 4)}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(table: pd.DataFrame) -> str:
    """A markdown table padded to align, so the same text reads well in a terminal."""
    header = [str(h) for h in table.columns]
    cells = [[cell(k, row[k]) for k in table.columns] for _, row in table.iterrows()]
    return markdown_table(header, cells, padded=True)
