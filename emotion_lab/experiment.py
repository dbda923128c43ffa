"""One job of a sweep: data, model, training, test evaluation, everything logged to MLflow."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import broadcast_object_list, set_seed
from mlflow.entities import Run

from emotion_lab import tracking
from emotion_lab.checkpoint import Checkpointer, TrainState
from emotion_lab.config import Config, TrainerConfig
from emotion_lab.data import make_loaders, tokenize_splits
from emotion_lab.embedding_grad import reuse_embedding_grad
from emotion_lab.modeling import build_model, load_tokenizer
from emotion_lab.optim import build_optimizer, build_scheduler
from emotion_lab.plots import confusion_matrix_figure
from emotion_lab.tracking import RunLogger
from emotion_lab.train import evaluate, fit

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Where a job sits: its output dir and, inside a sweep, the sweep's id and parent run."""

    output_dir: Path
    sweep_id: str | None = None
    parent_run_id: str | None = None
    job_num: int | None = None
    overrides: list[str] = field(default_factory=list)


def resolve_precision(cfg: TrainerConfig) -> str:
    """``auto`` -> bf16 where the hardware runs it natively (AMX/AVX512-BF16 CPUs, Ampere+ GPUs)."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if torch.cuda.is_available() and not cfg.cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"


def run_name(cfg: Config) -> str:
    return f"{cfg.init.value}-lr{cfg.lr:g}-{Path(cfg.model.name_or_path).name}"


def make_accelerator(cfg: TrainerConfig) -> Accelerator:
    # Hydra's basic launcher runs jobs one after another in one process; Accelerate keeps
    # process-wide singletons, so start each job from a clean state (the process group stays).
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(
        mixed_precision=resolve_precision(cfg),
        gradient_accumulation_steps=cfg.grad_accum_steps,
        cpu=cfg.cpu,
    )


# Keys that do not change what a job computes, so they do not change its identity.
_NOT_JOB_IDENTITY = ("resume", "debug", "paths", "tracking")


def job_key(resolved: dict[str, Any]) -> str:
    identity = {k: v for k, v in resolved.items() if k not in _NOT_JOB_IDENTITY}
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _final_metrics(run: Run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "best_"))}


def run_experiment(cfg: Config, job: JobContext, resolved: dict[str, Any]) -> dict[str, float]:
    """Train and test one configuration; returns the final metrics.

    With ``resume=true`` the job's newest MLflow run (same config) is continued from its last
    checkpoint, or skipped if it finished.
    """
    accelerator = make_accelerator(cfg.trainer)
    key = job_key(resolved)
    experiment_id, previous = None, None
    if accelerator.is_main_process:
        experiment_id = tracking.setup(cfg.tracking)
        if cfg.resume:
            previous = tracking.find_job_run(experiment_id, key)
    previous = broadcast_object_list([previous])[0]
    if previous is not None and previous.info.status == "FINISHED":
        log.info("Skipping: this job already finished in MLflow run %s.", previous.info.run_id)
        return _final_metrics(previous)

    tags = {
        tracking.ROLE_TAG: "job",
        tracking.JOB_KEY_TAG: key,
        "init": cfg.init.value,
        "model": cfg.model.name_or_path,
    }
    if job.sweep_id:
        tags |= {tracking.SWEEP_TAG: job.sweep_id, "job_num": str(job.job_num)}
        tags["overrides"] = " ".join(job.overrides)[:5000]
    if job.parent_run_id:
        tags["mlflow.parentRunId"] = job.parent_run_id
    params = tracking.flatten(resolved)
    with tracking.tracked_run(
        experiment_id, run_name(cfg), params, tags, resume=previous
    ) as logger:
        run_id = broadcast_object_list([logger.run_id])[0]
        ckpt_root = None
        if cfg.trainer.checkpointing:
            ckpt_root = (Path(cfg.paths.outputs) / "checkpoints" / run_id).resolve()
            logger.tags({"checkpoint_dir": str(ckpt_root)})
        if previous is None:
            logger.text(yaml.safe_dump(resolved, sort_keys=False), "config.yaml")
        return _train_and_test(cfg, job, accelerator, logger, ckpt_root)


def _train_and_test(
    cfg: Config,
    job: JobContext,
    accelerator: Accelerator,
    logger: RunLogger,
    ckpt_root: Path | None,
) -> dict[str, float]:
    wall_start = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model)
    with accelerator.main_process_first():
        splits = tokenize_splits(cfg.data, tokenizer, cfg.model.max_length)
    set_seed(cfg.seed)
    model = build_model(
        cfg.model, cfg.init, splits.label_names, tokenizer, cfg.model.attn_implementation
    )
    if (
        cfg.trainer.reuse_embedding_grad
        and accelerator.device.type == "cpu"
        and accelerator.num_processes == 1
        and not cfg.trainer.compile
    ):
        reuse_embedding_grad(model)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr)
    train_loader, val_loader, test_loader, sampler = make_loaders(
        splits,
        tokenizer,
        batch_size=cfg.trainer.batch_size,
        eval_batch_size=cfg.trainer.eval_batch_size,
        seed=cfg.seed,
        group_factor=cfg.trainer.length_group_factor if cfg.trainer.group_by_length else 1,
        num_workers=cfg.data.num_workers,
        pad_to_multiple_of=8 if accelerator.device.type == "cuda" else None,
    )
    # Counted on the unsharded loader: Accelerate steps the schedule once per process.
    total_steps = math.ceil(len(train_loader) / cfg.trainer.grad_accum_steps) * cfg.trainer.epochs
    scheduler = build_scheduler(
        optimizer, cfg.trainer.scheduler, total_steps, cfg.trainer.warmup_ratio
    )
    model, optimizer, train_loader, val_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, test_loader, scheduler
    )
    if cfg.trainer.compile:
        # dynamic: batches have as many lengths as the texts, one graph serves them all.
        model = torch.compile(model, dynamic=True)
    label_names = splits.label_names
    ckpt = Checkpointer(accelerator, TrainState(), ckpt_root, cfg.trainer.checkpoint_every_n_steps)
    if ckpt_root is not None:
        ckpt_root.mkdir(parents=True, exist_ok=True)
    if ckpt.restore():
        state = ckpt.state
        log.info(
            "Resumed at epoch %d, batch %d (step %d).", state.epoch, state.batches_done, state.step
        )
    else:
        logger.params(
            {
                "num_labels": len(label_names),
                "train_samples": len(splits.train),
                "val_samples": len(splits.validation),
                "test_samples": len(splits.test),
                "num_parameters": sum(p.numel() for p in model.parameters()),
                "precision": accelerator.mixed_precision,
                "num_processes": accelerator.num_processes,
                "device": accelerator.device.type,
                **{f"skipped_texts.{split}": n for split, n in splits.skipped.items()},
            }
        )
    logger.tags({"label_names": ",".join(label_names)})

    best_weights = fit(
        accelerator,
        model,
        optimizer,
        scheduler,
        train_loader,
        val_loader,
        sampler,
        label_names,
        cfg.trainer,
        logger,
        ckpt,
    )
    state = ckpt.state
    accelerator.unwrap_model(model).load_state_dict(best_weights)
    test = evaluate(accelerator, model, test_loader, label_names, desc="test")
    metrics = {
        **test.scalars("test"),
        "best_epoch": state.best_epoch,
        f"best_{cfg.trainer.monitor}": float(state.best_score),
        "epochs_run": len(state.history),
        "train_seconds": state.train_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
    }
    logger.metrics(metrics, step=state.step)
    logger.text(test.report, "classification_report.txt")
    logger.dict(test.report_dict, "classification_report.json")
    if accelerator.is_main_process:
        fig = confusion_matrix_figure(
            test.confusion,
            label_names,
            f"{run_name(cfg)}: test accuracy {test.accuracy:.3f}, "
            f"macro-F1 {test.macro_f1:.3f} (epoch {state.best_epoch})",
        )
        job.output_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(job.output_dir / "confusion_matrix.png", dpi=120)
        logger.figure(fig, "confusion_matrix.png")
        plt.close(fig)
        if cfg.tracking.log_model:
            with tempfile.TemporaryDirectory() as tmp:
                accelerator.unwrap_model(model).save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                logger.directory(tmp, "model")
    accelerator.wait_for_everyone()
    ckpt.remove()
    return metrics
