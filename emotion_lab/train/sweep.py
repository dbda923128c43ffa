"""Sweep-level bookkeeping: a parent MLflow run per multirun, and a closing summary.

Hydra calls these hooks in the launching process. Jobs write ``result.json`` into their own
output dir, which works for in-process and out-of-process launchers alike. In a distributed
launch every rank runs the sweep; only rank 0 keeps its books.

With ``resume=true`` the sweep continues the newest sweep of the same overrides: its parent run
is reopened and keeps its sweep id, so one parent run holds every job of the sweep however often
it was interrupted. The new output dir's ``sweep.json`` names that sweep id.

MLflow, the store's modules and the pre-flight checks are imported inside the hooks that use
them: the entry point imports this module, and ``--help`` or a bad override should not wait the
seconds MLflow takes to import (about 3 s on a 2-core machine).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from emotion_lab import stopping
from emotion_lab.config import TrackingConfig
from emotion_lab.errors import UserError
from emotion_lab.faults import fault_point
from emotion_lab.redaction import redact, redact_file
from emotion_lab.reporting import report_error
from emotion_lab.reports import markdown_table
from emotion_lab.storage import write_text_atomically
from emotion_lab.store import names
from emotion_lab.store.names import (
    BEST_EPOCH_METRIC,
    BEST_PREFIX,
    LOGGED_SCORES,
    VAL_ACCURACY,
    VAL_LOSS,
    VAL_MACRO_F1,
)
from emotion_lab.train.launch import is_main_launch_process

SWEEP_FILE = "sweep.json"
RESULT_FILE = "result.json"
# Written by the Optuna sweeper into the sweep dir when the search ends.
SEARCH_FILE = "optimization_results.yaml"
# Where Hydra saves the configs it composed: the sweep's, and each job's under output_subdir.
MULTIRUN_FILE = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


class JobFailed(Exception):
    """Raised to an optimising sweeper for a failed job, so it records a failed trial."""


# A job's status in its result.json: FINISHED, PRUNED (a search trial its pruner stopped; its
# MLflow run is FINISHED) or FAILED.
PRUNED = "PRUNED"


def job_status(metrics: dict[str, Any]) -> str:
    return PRUNED if names.PRUNED_TAG in metrics else "FINISHED"


def objective_value(result: dict[str, Any], name: str) -> float:
    if result["status"] == PRUNED:
        return math.nan
    if result["status"] != "FINISHED":
        raise JobFailed(result.get("error", "the job failed"))
    return float(result["metrics"][name])


def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else {"sweep_id": sweep_dir.name}


# Overrides that do not change what a sweep runs, so they do not change its identity.
_NOT_SWEEP_IDENTITY = ("resume", "resume_changed_data", "debug")


def sweep_key(overrides: list[str]) -> str:
    """Hash of a sweep's command-line overrides, in any order."""
    kept = sorted(o for o in overrides if o.split("=")[0].lstrip("+~") not in _NOT_SWEEP_IDENTITY)
    return hashlib.sha1(json.dumps(kept).encode()).hexdigest()[:16]


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    results = [json.loads(p.read_text()) for p in sweep_dir.glob(f"*/{RESULT_FILE}")]
    return sorted(results, key=lambda r: r.get("job_num") or 0)


# Overrides that say how a job ran, not what it varied: resume=true (a resumed search's new
# trials have it, its earlier ones not) and a search trial's bookkeeping (trial.*).
_NOT_SWEPT = ("resume=", "trial.")


def swept_overrides(results: list[dict[str, Any]]) -> list[list[str]]:
    """Each job's overrides, less those every job shares: what the sweep varied."""
    common = set.intersection(*(set(r.get("overrides", [])) for r in results)) if results else set()
    return [
        [o for o in r.get("overrides", []) if o not in common and not o.startswith(_NOT_SWEPT)]
        for r in results
    ]


# Validation numbers of each job's kept epoch (what picks a job), then its test numbers.
SUMMARY_SCORES = LOGGED_SCORES


def best_result(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished job that validation prefers, by the rule the reading commands use too."""
    from emotion_lab.store.reader import selection_key

    done = [r for r in results if r.get("status") == "FINISHED" and r.get("metrics")]
    if not done:
        return None
    done.sort(key=lambda r: r.get("job_num") or 0)
    return max(done, key=lambda r: selection_key(r["metrics"], r.get("monitor", VAL_ACCURACY)))


def _status(result: dict[str, Any]) -> str:
    if result.get("status") == PRUNED:
        return f"pruned after epoch {result['metrics'][names.PRUNED_TAG]}"
    return str(result.get("status"))


def summary_table(results: list[dict[str, Any]]) -> str:
    present = {k for r in results for k in r.get("metrics") or {}}
    scores = [k for k in SUMMARY_SCORES if k in present]
    header = ["job", "swept", "status", *scores, BEST_EPOCH_METRIC, "error"]
    rows = []
    for r, swept in zip(results, swept_overrides(results), strict=True):
        m = r.get("metrics") or {}
        rows.append(
            [
                str(r.get("job_num")),
                " ".join(swept),
                _status(r),
                *(f"{m[k]:.4f}" if k in m else "" for k in scores),
                f"{m[BEST_EPOCH_METRIC]:.0f}" if BEST_EPOCH_METRIC in m else "",
                str(r.get("error", "")),
            ]
        )
    return markdown_table(header, rows)


def search_summary(sweep_dir: Path, objective: str | None) -> str:
    """The optimising sweeper's best trial, if it left one."""
    path = sweep_dir / SEARCH_FILE
    if not path.exists():
        return ""
    found = yaml.safe_load(path.read_text())
    if "best_value" not in found:
        return ""
    params = " ".join(f"{k}={v}" for k, v in found["best_params"].items())
    return f"Best trial: {objective or 'objective'} = {found['best_value']:.4f} with {params}"


def stale_summary(experiment_id: str) -> str:
    """Runs of the experiment that look killed (RUNNING, no heartbeat for a while), if any.

    Read through the store this process opened at the sweep's start: ``sweep.json`` holds its
    URI redacted, which would not log in to a server that asks for credentials."""
    from mlflow.tracking import MlflowClient

    from emotion_lab.store.reader import stale_runs
    from emotion_lab.store.server import is_outage

    try:
        stale = stale_runs(MlflowClient(), experiment_id)
    except Exception as e:
        if not is_outage(e):
            raise
        return "\nStale runs were not checked: the MLflow server did not answer.\n"
    if not stale:
        return ""
    lines = [f"- run {s.run.info.run_id} ({s.run.info.run_name}): {s.describe()}" for s in stale]
    return (
        f"\n{len(stale)} RUNNING run(s) of this experiment stopped sending heartbeats "
        "(`python -m emotion_lab.runs` lists them, `... mark-killed` closes them):\n"
        + "\n".join(lines)
        + "\n"
    )


def _task_config(composed: DictConfig) -> Any:
    """The validated Config of a composed tree, without Hydra's own node."""
    task = composed.copy()
    with open_dict(task):
        del task["hydra"]
    return OmegaConf.to_object(task)


def job_configs(config: DictConfig) -> list[Any] | None:
    """Each job's validated config (or why it fails), composed as the basic sweeper will compose
    it; None for a sweeper that picks its jobs as it goes (Optuna)."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    loader = GlobalHydra.instance().config_loader()
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        [*params, *config.hydra.overrides.task]
    )
    configs: list[Any] = []
    for batch in BasicSweeper.split_arguments(overrides, None):
        for job in batch:
            try:
                configs.append(_task_config(loader.load_sweep_config(config, list(job))))
            except Exception as e:
                configs.append(e)
    return configs


def preflight_sweep(config: DictConfig) -> None:
    """Before the first job: every job's config, models and data (see emotion_lab.preflight)."""
    from emotion_lab import preflight

    base = _task_config(config)
    if not preflight.enabled(base):
        return
    jobs = job_configs(config)
    if jobs is None:
        preflight.check_job(base, "the search")
    else:
        preflight.check_sweep(jobs)


class SweepCallback(Callback):
    """Checks every job before the first (pre-flight), creates the sweep's parent run, closes it
    and prints a summary after; redacts the configs Hydra saves for each job."""

    parent_run_id: str | None = None
    max_outage_s: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from emotion_lab.store.connection import open_for_writing, resolve_uri
        from emotion_lab.store.writer import create_sweep_run, find_sweep_run, reopen_sweep_run

        main = is_main_launch_process()
        key = sweep_key(list(config.hydra.overrides.task))
        try:
            # Every rank checks (the same answer), so that all of them stop together.
            preflight_sweep(config)
            if not main:
                return
            tracking_cfg: TrackingConfig = OmegaConf.to_object(config.tracking)  # type: ignore[assignment]
            experiment_id = open_for_writing(tracking_cfg)
            previous = find_sweep_run(experiment_id, key) if config.get("resume") else None
        except UserError as e:
            if main:
                report_error(e, bool(config.get("debug", False)))
            sys.exit(1)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"sweep_id": sweep_dir.name}
        fault_point("sweep_start")
        # A stop signal waits until the parent run exists and is closed at exit.
        with stopping.deferred():
            if previous is None:
                info["parent_run_id"] = create_sweep_run(
                    experiment_id,
                    info["sweep_id"],
                    {names.SWEEP_DIR_TAG: str(sweep_dir.resolve()), names.SWEEP_KEY_TAG: key},
                )
            else:
                reopen_sweep_run(previous)
                info["sweep_id"] = previous.data.tags[names.SWEEP_TAG]
                info["parent_run_id"] = previous.info.run_id
            self.parent_run_id = info["parent_run_id"]
            self.max_outage_s = tracking_cfg.max_outage_s
            atexit.register(self._close_abandoned, sweep_dir)
            fault_point("sweep_start")
            from emotion_lab.train.records import sweep_records

            sweep_records(info["parent_run_id"], previous)
            info["experiment_id"] = experiment_id
            info["tracking_uri"] = redact(resolve_uri(tracking_cfg.uri))
            # Other ranks and job processes read it while it is written.
            write_text_atomically(sweep_dir / SWEEP_FILE, json.dumps(info, indent=2))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra has just saved the composed configs (the job's under its output_subdir, the
        sweep's as multirun.yaml) with whatever credentials the overrides held: redact them."""
        saved = []
        if config.hydra.output_subdir is not None:
            subdir = Path(config.hydra.runtime.output_dir) / config.hydra.output_subdir
            saved += sorted(subdir.glob("*.yaml"))
        if config.hydra.mode == RunMode.MULTIRUN:
            saved.append(Path(config.hydra.sweep.dir) / MULTIRUN_FILE)
        for path in saved:
            if path.is_file():
                redact_file(path)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """In-process launchers: the parent run's heartbeat, between one job and the next."""
        from emotion_lab.store.writer import RunLogger

        if self.parent_run_id is not None:
            RunLogger(self.parent_run_id).heartbeat(force=True)
        fault_point("between_jobs")

    def _close_abandoned(self, sweep_dir: Path) -> None:
        """Hydra skips on_multirun_end when the process exits mid-sweep (a cluster job killed at
        its time limit, a search where no trial finished, a distributed sweep stopped at a failed
        job): don't leave the parent running."""
        stopping.exiting()  # a signal now (the launcher stopping the ranks) waits for this
        if self.parent_run_id is None:
            return
        table = summary_table(collect_results(sweep_dir))
        signum = stopping.received()
        stopped_by = None if signum is None else signal.Signals(signum).name
        note = "The sweep stopped before its end: see the error it printed."
        if stopped_by is not None:
            note = f"The sweep was stopped by {stopped_by}: rerun it with resume=true."
        with contextlib.suppress(UserError):  # the error already printed is the one that counts
            self._close_parent(True, f"{note}\n\n{table}\n", stopped_by)

    def _close_parent(self, failed: bool, summary: str, stopped_by: str | None = None) -> None:
        """Close the parent run, waiting out a server outage as jobs do; past the limit it stays
        RUNNING (``TrackingOutage``) and ``resume=true`` on the same command closes it."""
        from emotion_lab.store.writer import end_sweep_run

        assert self.parent_run_id is not None and self.max_outage_s is not None
        run_id, self.parent_run_id = self.parent_run_id, None
        with stopping.deferred():
            end_sweep_run(run_id, failed, summary, self.max_outage_s, stopped_by)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from emotion_lab.store.connection import ui_address

        # Every job has ended: a stop signal from now on lets the sweep close its books.
        stopping.exiting()
        if not is_main_launch_process():
            return
        fault_point("sweep_end")
        sweep_dir = Path(config.hydra.sweep.dir)
        info = read_sweep_file(sweep_dir)
        results = collect_results(sweep_dir)
        failed = [r for r in results if r.get("status") not in ("FINISHED", PRUNED)]
        pruned = sum(r.get("status") == PRUNED for r in results)
        table = summary_table(results)
        best = search_summary(sweep_dir, config.get("objective"))
        chosen = best_result(results)
        if chosen is not None and not best:
            monitor = chosen.get("monitor", VAL_ACCURACY)
            best = (
                f"Best by validation: job {chosen['job_num']} ({monitor} "
                f"{chosen['metrics'][BEST_PREFIX + monitor]:.4f}; ties broken by {VAL_MACRO_F1}, "
                f"then {VAL_LOSS})"
            )
        summary = f"{table}\n\n{best}\n" if best else f"{table}\n"
        if "experiment_id" in info:
            summary += stale_summary(info["experiment_id"])
        if self.parent_run_id is not None:
            try:
                self._close_parent(bool(failed), summary)
            except UserError as e:
                report_error(e, bool(config.get("debug", False)))
                sys.exit(1)
        fault_point("sweep_end")
        link = ""
        if "experiment_id" in info:
            ui = ui_address(info["tracking_uri"])
            url = names.sweep_runs_url(ui, info["experiment_id"], info["sweep_id"])
            link = f"Runs in the MLflow UI: {url}\n"
        print(
            f"\nSweep {info['sweep_id']}: {len(results) - len(failed) - pruned} finished, "
            + (f"{pruned} pruned, " if pruned else "")
            + f"{len(failed)} failed\n{redact(summary)}{link}",
            end="",
            flush=True,
        )
        if failed:
            sys.exit(1)
