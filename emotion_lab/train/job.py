"""One job: data, model, training, test evaluation, everything logged to its MLflow run.

``run_experiment`` tells the story in one screen: open (or, with ``resume=true``, reopen or
skip) the job's run, whose lifecycle and tags live in ``store/writer.py``; ``prepare`` builds
what the loop trains with; ``fit`` (``train/loop.py``) trains and leaves the best epoch in the
model; ``test_and_log`` evaluates it on the test split and logs the run's final metrics and
artifacts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import broadcast_object_list, set_seed
from mlflow.entities import Run
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from emotion_lab import stopping
from emotion_lab.config import Config, TrainerConfig
from emotion_lab.data import (
    LabeledSplits,
    TokenizedSplits,
    load_splits,
    make_loaders,
    tokenize_splits,
)
from emotion_lab.errors import UserError
from emotion_lab.faults import fault_point
from emotion_lab.modeling import build_model, check_max_length, load_tokenizer
from emotion_lab.preflight import check_job
from emotion_lab.process import high_water_rss_kb
from emotion_lab.search.trial import TrialPruned, pruned_metrics, record_pruned, search_trial
from emotion_lab.store import names
from emotion_lab.store.connection import open_for_writing
from emotion_lab.store.names import flatten
from emotion_lab.store.writer import (
    PENDING_FILE,
    JobContext,
    RunLogger,
    find_job_run,
    finished_job_metrics,
    job_tags,
    tracked_run,
)
from emotion_lab.train.checkpoint import Checkpointer
from emotion_lab.train.loop import Training, TrainState, best_epoch_record, fit, predict
from emotion_lab.train.metrics import evaluate_logits
from emotion_lab.train.mlflow_model import add_mlflow_model, example_input, log_logged_model
from emotion_lab.train.optim import build_optimizer, build_scheduler
from emotion_lab.train.predictions import predictions_frame
from emotion_lab.train.records import job_records, log_records
from emotion_lab.train.speed import (
    SpeedChoices,
    apply_speed,
    clip_for,
    hardware_kind,
    resolve_speed,
)
from emotion_lab.train.system_metrics import follow_system_metrics
from emotion_lab.train.timing import Stopwatch

log = logging.getLogger(__name__)


def resolve_precision(cfg: TrainerConfig) -> str:
    """``auto`` -> bf16 where the hardware runs it natively (AMX/AVX512-BF16 CPUs, Ampere+ GPUs)."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if torch.cuda.is_available() and not cfg.cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"


def peak_memory_mb(accelerator: Accelerator) -> float:
    """This process's peak so far: allocated CUDA memory on a GPU, else its high-water RSS."""
    if accelerator.device.type == "cuda":
        return torch.cuda.max_memory_allocated(accelerator.device) / 2**20
    kb = high_water_rss_kb()
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


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
_NOT_JOB_IDENTITY = ("resume", "resume_changed_data", "debug", "paths", "tracking")


def job_key(resolved: dict[str, Any]) -> str:
    identity = {k: v for k, v in resolved.items() if k not in _NOT_JOB_IDENTITY}
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Prepared:
    """What ``prepare`` builds for a job: the loop's bundle, and what testing needs besides."""

    accelerator: Accelerator
    training: Training
    test_loader: DataLoader
    splits: TokenizedSplits
    tokenizer: PreTrainedTokenizerBase
    speed: SpeedChoices


def run_experiment(cfg: Config, job: JobContext, resolved: dict[str, Any]) -> dict[str, float]:
    """Train and test one configuration; returns the final metrics.

    With ``resume=true`` the job's newest MLflow run (same config) is continued from its last
    checkpoint, or skipped if it finished.
    """
    check_job(cfg)
    watch = Stopwatch()
    accelerator = make_accelerator(cfg.trainer)
    stopping.prepare(accelerator)
    data, bad_input = _data_or_error(cfg, accelerator, job)
    key = job_key(resolved)
    experiment_id, previous = _open_store(cfg, accelerator, key)
    job.experiment_id = experiment_id
    finished = finished_job_metrics(previous, accelerator.is_main_process)
    if finished is not None:
        assert previous is not None
        job.run_id = previous.info.run_id
        return finished | pruned_metrics(previous)
    tags = job_tags(job, key, cfg.init.value, cfg.model.name_or_path)
    params = flatten(resolved) | (data.params() if data else {})
    records = job_records(cfg, accelerator, data, previous)
    tags |= records.tags
    with tracked_run(
        experiment_id, run_name(cfg), params, tags, cfg.tracking, resume=previous
    ) as logger:
        log_records(logger, records, previous)
        job.run_id = logger.run_id
        if bad_input is not None:
            raise bad_input  # the run records it: FAILED, with the reason
        assert data is not None
        ckpt_root = _checkpoint_root(cfg, accelerator, logger)
        # After the spool: a resumed run's samples number on after those it already holds.
        records.sampler = follow_system_metrics(logger, cfg.tracking, accelerator.device)
        logger.text(yaml.safe_dump(resolved, sort_keys=False), names.CONFIG_ARTIFACT)
        wall_start = time.perf_counter()
        watch.lap("start")
        parts = prepare(cfg, accelerator, data, watch)
        every = cfg.trainer.checkpoint_every_n_steps
        ckpt = Checkpointer(accelerator, TrainState(), ckpt_root, every)
        _resume_or_start(ckpt, logger, parts)
        parts.training.after_epoch = search_trial(cfg, accelerator)
        try:
            fit(accelerator, parts.training, cfg.trainer, logger.metrics, ckpt)
        except TrialPruned as pruned:
            # A search's bad trial: FINISHED (resume=true never retrains it), untested.
            metrics = record_pruned(logger, ckpt.state, pruned)
        else:
            watch.lap("fit")
            metrics = test_and_log(cfg, job, parts, logger, ckpt.state)
        watch.lap("finish")
        metrics["wall_seconds"] = time.perf_counter() - wall_start
        finals = {"wall_seconds": metrics["wall_seconds"], **watch.metrics()}
        finals[names.PEAK_MEMORY_MB] = peak_memory_mb(accelerator)
        finals[names.RECORDS_SECONDS] = records.cost_s()
        logger.metrics(finals, step=ckpt.state.step)
        logger.flush()
        accelerator.wait_for_everyone()
    # Only once the run is FINISHED: a kill before that resumes from the checkpoint.
    ckpt.remove()
    return metrics


def _data_or_error(
    cfg: Config, accelerator: Accelerator, job: JobContext
) -> tuple[LabeledSplits | None, UserError | None]:
    """The checked data, or the user error that stops the job. A lone job with bad input leaves
    no run behind (the error is raised here); a sweep's job is recorded all the same, as FAILED
    with the reason, so that the sweep accounts for every job."""
    try:
        return _checked_data(cfg, accelerator), None
    except UserError as e:
        if job.sweep_id is None:
            raise
        return None, e


def _open_store(cfg: Config, accelerator: Accelerator, key: str) -> tuple[str | None, Run | None]:
    """The experiment id (main process only) and, with ``resume=true``, the job's newest run."""
    experiment_id, previous = None, None
    if accelerator.is_main_process:
        experiment_id = open_for_writing(cfg.tracking)
        if cfg.resume:
            previous = find_job_run(experiment_id, key)
    return experiment_id, broadcast_object_list([previous])[0]


def _checkpoint_root(cfg: Config, accelerator: Accelerator, logger: RunLogger) -> Path | None:
    """The run's checkpoint folder (None without checkpointing), named in its tags; unsent
    writes are kept there if the tracking server goes away."""
    run_id = broadcast_object_list([logger.run_id])[0]
    if not cfg.trainer.checkpointing:
        return None
    root = (Path(cfg.paths.outputs) / "checkpoints" / run_id).resolve()
    logger.tags({names.CHECKPOINT_DIR_TAG: str(root)})
    logger.spool_to(root / PENDING_FILE)
    return root


def _resume_or_start(ckpt: Checkpointer, logger: RunLogger, parts: Prepared) -> None:
    """Continue from the latest checkpoint, or log what the fresh job found at run time."""
    if ckpt.restore():
        state = ckpt.state
        log.info(
            "Resumed at epoch %d, batch %d (step %d).", state.epoch, state.batches_done, state.step
        )
    else:
        logger.params(_data_params(parts))
    logger.tags({names.LABEL_NAMES_TAG: ",".join(parts.splits.label_names)})


def _checked_data(cfg: Config, accelerator: Accelerator) -> LabeledSplits:
    """The position limit checked, then the data read, labelled and split: before the store
    is touched and before any weights load."""
    check_max_length(cfg.model)
    # An error on the main process must not skip the barrier the other processes wait at.
    error: UserError | None = None
    with accelerator.main_process_first():
        try:
            data = load_splits(cfg.data)
        except UserError as e:
            error = e
    if error is not None:
        raise error
    return data


def prepare(
    cfg: Config, accelerator: Accelerator, data: LabeledSplits, watch: Stopwatch
) -> Prepared:
    """Tokenized data, the model, optimizer, schedule and loaders, prepared by Accelerate."""
    tokenizer = load_tokenizer(cfg.model.tokenizer_name)
    with accelerator.main_process_first():
        splits = tokenize_splits(data, tokenizer, cfg.model.max_length)
    watch.lap("data")
    set_seed(cfg.seed)
    model = build_model(
        cfg.model, cfg.init, splits.label_names, tokenizer, cfg.model.attn_implementation
    )
    kind = hardware_kind(accelerator.device.type)
    speed = resolve_speed(
        cfg.trainer, kind, accelerator.num_processes, cfg.optimizer.lazy_embedding
    )
    embedding_grad = apply_speed(model, speed)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, embedding_grad)
    pad_to = 8 if accelerator.device.type == "cuda" else None
    train_loader, val_loader, test_loader = make_loaders(
        splits, tokenizer, cfg.trainer, cfg.data, cfg.seed, pad_to_multiple_of=pad_to
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
    training = Training(model, optimizer, scheduler, train_loader, val_loader, splits.label_names)
    training.clip_grad_norm_ = clip_for(accelerator, embedding_grad)
    watch.lap("model")
    return Prepared(accelerator, training, test_loader, splits, tokenizer, speed)


def _data_params(parts: Prepared) -> dict[str, Any]:
    """What the job found at run time: sizes of the data it used, of the model, the hardware."""
    splits, training, accelerator = parts.splits, parts.training, parts.accelerator
    return {
        "num_labels": len(splits.label_names),
        "train_samples": len(splits.train),
        "val_samples": len(splits.validation),
        "test_samples": len(splits.test),
        "num_parameters": sum(p.numel() for p in training.model.parameters()),
        "precision": accelerator.mixed_precision,
        "num_processes": accelerator.num_processes,
        "device": accelerator.device.type,
        **parts.speed.params(),
        **{f"skipped_texts.{split}": n for split, n in splits.skipped.items()},
    }


def test_and_log(
    cfg: Config, job: JobContext, parts: Prepared, logger: RunLogger, state: TrainState
) -> dict[str, float]:
    """Test the loaded best epoch; log final metrics, the report, the confusion matrix, the
    per-example predictions and the model. Final metrics: ``test_*``, and the kept epoch's
    validation numbers as ``best_val_*``."""
    accelerator, training, splits = parts.accelerator, parts.training, parts.splits
    label_names = training.label_names
    start = time.perf_counter()
    test_logits, test_labels = predict(accelerator, training.model, parts.test_loader, "test")
    test = evaluate_logits(test_logits, test_labels, label_names)
    test_seconds = time.perf_counter() - start
    val_logits, val_labels = state.best_val_logits, state.best_val_labels
    assert val_logits is not None and val_labels is not None
    best = best_epoch_record(state)
    metrics = {
        **test.scalars("test"),
        names.TEST_SAMPLES_PER_S: test.n / max(test_seconds, 1e-9),
        names.BEST_EPOCH_METRIC: state.best_epoch,
        **{names.BEST_PREFIX + k: best[k] for k in best if k.startswith("val_")},
        "epochs_run": len(state.history),
        "train_seconds": state.train_seconds,
    }
    metrics.pop(names.BEST_PREFIX + "val_samples_per_s", None)
    logger.metrics(metrics, step=state.step)
    report_text, report_dict = test.report()
    logger.text(report_text, names.REPORT_TXT_ARTIFACT)
    logger.dict(report_dict, names.REPORT_JSON_ARTIFACT)
    if accelerator.is_main_process:
        # Imported here: the figure libraries are not held in memory through training.
        import matplotlib.pyplot as plt

        from emotion_lab.train.plots import confusion_matrix_figure

        fig = confusion_matrix_figure(
            test.confusion,
            label_names,
            f"{run_name(cfg)}: test accuracy {test.accuracy:.3f}, "
            f"macro-F1 {test.macro_f1:.3f} (epoch {state.best_epoch})",
        )
        job.output_dir.mkdir(parents=True, exist_ok=True)
        figure = job.output_dir / names.CONFUSION_ARTIFACT
        fig.savefig(figure, dpi=120)
        plt.close(fig)
        logger.file(figure)
        with tempfile.TemporaryDirectory() as tmp:
            test_rows = predictions_frame(
                test_logits, test_labels, splits.test_rows, splits.test_texts, label_names
            )
            test_rows.to_parquet(Path(tmp) / names.TEST_PREDICTIONS, index=False)
            val_rows = predictions_frame(
                val_logits, val_labels, splits.validation_rows, splits.validation_texts, label_names
            )
            val_rows.to_parquet(Path(tmp) / names.VAL_PREDICTIONS, index=False)
            logger.directory(tmp, names.PREDICTIONS_ARTIFACT)
        if cfg.tracking.log_model:
            with tempfile.TemporaryDirectory() as tmp:
                accelerator.unwrap_model(training.model).save_pretrained(tmp)
                parts.tokenizer.save_pretrained(tmp)
                add_mlflow_model(
                    Path(tmp),
                    label_names,
                    cfg.data.text_columns,
                    cfg.model.max_length,
                    example_input(splits.test_texts[0], cfg.data.text_columns),
                )
                fault_point("model_artifact")
                logger.directory(tmp, names.MODEL_ARTIFACT)
                fault_point("model_artifact")
                log_logged_model(logger, Path(tmp), metrics, state.step)
    return metrics
