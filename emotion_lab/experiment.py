"""One job of a sweep: data, model, training, test evaluation, everything logged to MLflow."""

from __future__ import annotations

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
from accelerate.utils import set_seed

from emotion_lab import tracking
from emotion_lab.config import Config, TrainerConfig
from emotion_lab.data import make_loaders, tokenize_splits
from emotion_lab.modeling import build_model, load_tokenizer
from emotion_lab.optim import build_optimizer, build_scheduler
from emotion_lab.plots import confusion_matrix_figure
from emotion_lab.tracking import RunLogger
from emotion_lab.train import evaluate, fit


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


def run_experiment(cfg: Config, job: JobContext, resolved: dict[str, Any]) -> dict[str, float]:
    """Train and test one configuration; returns the final metrics."""
    accelerator = make_accelerator(cfg.trainer)
    experiment_id = tracking.setup(cfg.tracking) if accelerator.is_main_process else None
    tags = {tracking.ROLE_TAG: "job", "init": cfg.init.value, "model": cfg.model.name_or_path}
    if job.sweep_id:
        tags |= {tracking.SWEEP_TAG: job.sweep_id, "job_num": str(job.job_num)}
        tags["overrides"] = " ".join(job.overrides)[:5000]
    if job.parent_run_id:
        tags["mlflow.parentRunId"] = job.parent_run_id
    params = tracking.flatten(resolved)
    with tracking.tracked_run(experiment_id, run_name(cfg), params, tags) as logger:
        logger.text(yaml.safe_dump(resolved, sort_keys=False), "config.yaml")
        return _train_and_test(cfg, job, accelerator, logger)


def _train_and_test(
    cfg: Config, job: JobContext, accelerator: Accelerator, logger: RunLogger
) -> dict[str, float]:
    wall_start = time.perf_counter()
    tokenizer = load_tokenizer(cfg.model)
    with accelerator.main_process_first():
        splits = tokenize_splits(cfg.data, tokenizer, cfg.model.max_length)
    set_seed(cfg.seed)
    model = build_model(cfg.model, cfg.init, splits.label_names, tokenizer)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr)
    train_loader, val_loader, test_loader, sampler = make_loaders(
        splits,
        tokenizer,
        batch_size=cfg.trainer.batch_size,
        eval_batch_size=cfg.trainer.eval_batch_size,
        seed=cfg.seed,
        group_by_length=cfg.trainer.group_by_length,
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
    label_names = splits.label_names
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
        }
    )
    logger.tags({"label_names": ",".join(label_names)})

    result = fit(
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
    )
    accelerator.unwrap_model(model).load_state_dict(result.best_state)
    test = evaluate(accelerator, model, test_loader, label_names, desc="test")
    metrics = {
        **test.scalars("test"),
        "best_epoch": result.best_epoch,
        f"best_{cfg.trainer.monitor}": result.best_score,
        "epochs_run": result.epochs_run,
        "train_seconds": result.train_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
    }
    logger.metrics(metrics, step=result.steps)
    logger.text(test.report, "classification_report.txt")
    logger.dict(test.report_dict, "classification_report.json")
    if accelerator.is_main_process:
        fig = confusion_matrix_figure(
            test.confusion,
            label_names,
            f"{run_name(cfg)}: test accuracy {test.accuracy:.3f}, "
            f"macro-F1 {test.macro_f1:.3f} (epoch {result.best_epoch})",
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
    return metrics
