"""Hydra entry point: compose and validate the config, run the job, report errors in one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emotion_lab import options, stopping
from emotion_lab.config import CONFIG_DIR, Config, register_schemas
from emotion_lab.errors import NotRequeued
from emotion_lab.redaction import install_log_redaction, redact
from emotion_lab.reporting import quiet_libraries, report_error
from emotion_lab.train.launch import (
    export_submitit_distributed_env,
    is_main_launch_process,
    ranks_share_the_sweep,
    register_resolvers,
    requeued,
)
from emotion_lab.train.sweep import RESULT_FILE, job_status, objective_value, read_sweep_file

log = logging.getLogger("emotion_lab")

register_schemas()
register_resolvers()
options.register_resolver()
# Before Hydra's launcher logs each job's overrides, which may hold credentials.
install_log_redaction()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(dcfg: DictConfig) -> dict[str, Any] | float:
    from emotion_lab.train.job import JobContext, run_experiment, run_name
    from emotion_lab.train.job_end import job_end_block

    export_submitit_distributed_env()
    quiet_libraries()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    output_dir = Path(hc.runtime.output_dir)
    job = JobContext(output_dir=output_dir, overrides=[redact(o) for o in hc.overrides.task])
    if multirun:
        sweep = read_sweep_file(Path(hc.sweep.dir))
        job.sweep_id, job.parent_run_id = sweep["sweep_id"], sweep.get("parent_run_id")
        job.job_num = hc.job.num
    result: dict[str, Any] = {
        "overrides": job.overrides,
        "job_num": job.job_num,
        "monitor": dcfg.trainer.monitor,
    }
    in_submitit = "SUBMITIT_EXECUTOR" in os.environ
    if in_submitit:
        stopping.defer_submitit_signal()
    try:
        cfg: Config = OmegaConf.to_object(dcfg)  # type: ignore[assignment]
        resolved = OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)
        if in_submitit and is_main_launch_process() and requeued(output_dir):
            cfg.resume = True  # an earlier attempt of this job was requeued: continue its run
        metrics = run_experiment(cfg, job, resolved)
        result |= {"status": job_status(metrics), "metrics": metrics}
    except Exception as e:
        result |= {"status": "FAILED", "error": report_error(e, bool(dcfg.get("debug", False)))}
    except stopping.Stopped as stop:
        _record(output_dir, result | {"status": "KILLED", "error": stop.line()})
        if not stop.by_submitit:
            raise
        result |= {"status": "FAILED", "error": requeue(stop, hc.launcher.get("max_num_timeout"))}
    _record(output_dir, result)
    if not multirun and result["status"] == "FINISHED" and job.run_id and job.experiment_id:
        print(
            job_end_block(
                result["metrics"], run_name(cfg), job.run_id, job.experiment_id, cfg.tracking.uri
            ),
            end="",
            flush=True,
        )
    # Ranks in lockstep cannot go on after a failed job: if it failed on some ranks only, or at a
    # different point (rank 0 alone talks to MLflow and reads the data first), they would wait
    # forever on each other. The launcher stops them all once one rank exits, so each waits for
    # the others first (rank 0 may still be recording the failure).
    if result["status"] == "FAILED" and (not multirun or ranks_share_the_sweep()):
        stopping.part_together()
        raise SystemExit(1)
    # A sweeper that optimises (Optuna) needs one number back; the result file keeps the rest.
    objective = dcfg.get("objective")
    return result if objective is None else objective_value(result, objective)


def _record(output_dir: Path, result: dict[str, Any]) -> None:
    if is_main_launch_process():
        (output_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))


def requeue(stop: stopping.Stopped, max_num_timeout: object) -> str:
    """Submitit's preemption signal stopped the job, its checkpoint written and its run closed:
    submitit requeues the job now (this process exits), or says why not; then the run ends
    FAILED with that reason, and the line is returned (printed to the job's log)."""
    from submitit.core.utils import UncompletedJobError

    from emotion_lab.store.writer import fail_run

    try:
        stopping.hand_to_submitit(stop)
    except (UncompletedJobError, subprocess.CalledProcessError) as e:
        why = str(e).removeprefix("Job not requeued because: ").rstrip(".")
        if isinstance(e, subprocess.CalledProcessError):
            why = "scontrol requeue was refused (the job needs sbatch --requeue)"
        error = NotRequeued(
            f"stopped by {stop.tag()} and not requeued: {why} (hydra.launcher.max_num_timeout="
            f"{max_num_timeout}); the checkpoint is kept: rerun with resume=true"
        )
        line = report_error(error, False)
        if stop.run_id is not None:
            fail_run(stop.run_id, line)
        return line
