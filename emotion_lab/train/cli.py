"""Hydra entry point: compose and validate the config, run the job, report errors in one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emotion_lab import options
from emotion_lab.config import CONFIG_DIR, Config, register_schemas
from emotion_lab.redaction import install_log_redaction, redact
from emotion_lab.reporting import quiet_libraries, report_error
from emotion_lab.train.launch import (
    export_submitit_distributed_env,
    is_main_launch_process,
    ranks_share_the_sweep,
    register_resolvers,
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
    try:
        cfg: Config = OmegaConf.to_object(dcfg)  # type: ignore[assignment]
        resolved = OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)
        metrics = run_experiment(cfg, job, resolved)
        result |= {"status": job_status(metrics), "metrics": metrics}
    except Exception as e:
        result |= {"status": "FAILED", "error": report_error(e, bool(dcfg.get("debug", False)))}
    if is_main_launch_process():
        (output_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
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
    # forever on each other. The launcher stops them all.
    if result["status"] == "FAILED" and (not multirun or ranks_share_the_sweep()):
        raise SystemExit(1)
    # A sweeper that optimises (Optuna) needs one number back; the result file keeps the rest.
    objective = dcfg.get("objective")
    return result if objective is None else objective_value(result, objective)
