"""One job: data, model, training, test evaluation, everything logged to its MLflow run.

``run_experiment`` opens (or, with ``resume=true``, reopens) the job's run; ``prepare`` builds
what the loop trains with; ``test_and_log`` evaluates the best epoch on the test split and logs
the run's final metrics and artifacts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
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
from emotion_lab.store import names
from emotion_lab.store.connection import open_for_writing
from emotion_lab.store.names import flatten
from emotion_lab.store.writer import PENDING_FILE, RunLogger, find_job_run, tracked_run
from emotion_lab.train.checkpoint import Checkpointer, TrainState
from emotion_lab.train.embedding_grad import reuse_embedding_grad
from emotion_lab.train.loop import Training, best_epoch_record, fit, predict
from emotion_lab.train.metrics import evaluate_logits
from emotion_lab.train.mlflow_model import add_mlflow_model, example_input, log_logged_model
from emotion_lab.train.optim import build_optimizer, build_scheduler
from emotion_lab.train.predictions import predictions_frame
from emotion_lab.train.records import job_records, log_records
from emotion_lab.train.system_metrics import follow_system_metrics
from emotion_lab.train.timing import Stopwatch

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Where a job sits: its output dir and, inside a sweep, the sweep's id and parent run."""

    output_dir: Path
    sweep_id: str | None = None
    parent_run_id: str | None = None
    job_num: int | None = None
    overrides: list[str] = field(default_factory=list)
    # Set by run_experiment on the main process: the job's MLflow run and its experiment.
    run_id: str | None = None
    experiment_id: str | None = None


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


def _final_metrics(run: Run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k.startswith(("test_", names.BEST_PREFIX))}


def _remove_leftover_checkpoint(run: Run) -> None:
    """A job killed after its run was marked FINISHED may have left its checkpoint behind."""
    folder = Path(run.data.tags.get(names.CHECKPOINT_DIR_TAG, ""))
    if folder.name == run.info.run_id and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def run_experiment(cfg: Config, job: JobContext, resolved: dict[str, Any]) -> dict[str, float]:
    """Train and test one configuration; returns the final metrics.

    With ``resume=true`` the job's newest MLflow run (same config) is continued from its last
    checkpoint, or skipped if it finished.
    """
    check_job(cfg)
    watch = Stopwatch()
    accelerator = make_accelerator(cfg.trainer)
    data, early_error = None, None
    try:
        data = _checked_data(cfg, accelerator)
    except UserError as e:
        # A lone job with bad input leaves no run behind. A sweep's job is recorded all the
        # same, as FAILED with the reason, so that the sweep accounts for every job.
        if job.sweep_id is None:
            raise
        early_error = e
    key = job_key(resolved)
    experiment_id, previous = None, None
    if accelerator.is_main_process:
        experiment_id = open_for_writing(cfg.tracking)
        if cfg.resume:
            previous = find_job_run(experiment_id, key)
    previous = broadcast_object_list([previous])[0]
    job.experiment_id = experiment_id
    if previous is not None and previous.info.status == "FINISHED":
        log.info("Skipping: this job already finished in MLflow run %s.", previous.info.run_id)
        job.run_id = previous.info.run_id
        if accelerator.is_main_process:
            _remove_leftover_checkpoint(previous)
        return _final_metrics(previous)

    tags = {
        names.ROLE_TAG: names.ROLE_JOB,
        names.JOB_KEY_TAG: key,
        names.INIT_TAG: cfg.init.value,
        names.MODEL_TAG: cfg.model.name_or_path,
    }
    if job.sweep_id:
        tags |= {names.SWEEP_TAG: job.sweep_id, names.JOB_NUM_TAG: str(job.job_num)}
        tags[names.OVERRIDES_TAG] = " ".join(job.overrides)[:5000]
    if job.parent_run_id:
        tags[names.PARENT_TAG] = job.parent_run_id
    params = flatten(resolved) | (data.params() if data else {})
    records = job_records(cfg, accelerator, data, previous)
    tags |= records.tags
    with tracked_run(
        experiment_id, run_name(cfg), params, tags, cfg.tracking, resume=previous
    ) as logger:
        log_records(logger, records, previous)
        job.run_id = logger.run_id
        if early_error is not None:
            raise early_error
        assert data is not None
        run_id = broadcast_object_list([logger.run_id])[0]
        ckpt_root = None
        if cfg.trainer.checkpointing:
            ckpt_root = (Path(cfg.paths.outputs) / "checkpoints" / run_id).resolve()
            logger.tags({names.CHECKPOINT_DIR_TAG: str(ckpt_root)})
            logger.spool_to(ckpt_root / PENDING_FILE)
        # After the spool: a resumed run's samples number on after those it already holds.
        records.sampler = follow_system_metrics(logger, cfg.tracking, accelerator.device)
        logger.text(yaml.safe_dump(resolved, sort_keys=False), names.CONFIG_ARTIFACT)
        wall_start = time.perf_counter()
        watch.lap("start")
        training, test_loader, splits, tokenizer = prepare(cfg, accelerator, data, watch)
        ckpt = Checkpointer(
            accelerator, TrainState(), ckpt_root, cfg.trainer.checkpoint_every_n_steps
        )
        if ckpt.restore():
            state = ckpt.state
            log.info(
                "Resumed at epoch %d, batch %d (step %d).",
                state.epoch,
                state.batches_done,
                state.step,
            )
        else:
            logger.params(_data_params(splits, training, accelerator))
        logger.tags({names.LABEL_NAMES_TAG: ",".join(splits.label_names)})
        best_weights = fit(accelerator, training, cfg.trainer, logger.metrics, ckpt)
        if best_weights is not None:
            accelerator.unwrap_model(training.model).load_state_dict(best_weights)
        del best_weights  # the model holds them now
        watch.lap("fit")
        metrics = test_and_log(
            cfg, job, accelerator, training, test_loader, splits, tokenizer, logger, ckpt
        )
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
) -> tuple[Training, DataLoader, TokenizedSplits, PreTrainedTokenizerBase]:
    """Tokenized data, the model, optimizer, schedule and loaders, prepared by Accelerate."""
    tokenizer = load_tokenizer(cfg.model.tokenizer_name)
    with accelerator.main_process_first():
        splits = tokenize_splits(data, tokenizer, cfg.model.max_length)
    watch.lap("data")
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
    watch.lap("model")
    return training, test_loader, splits, tokenizer


def _data_params(
    splits: TokenizedSplits, training: Training, accelerator: Accelerator
) -> dict[str, Any]:
    """What the job found at run time: sizes of the data it used, of the model, the hardware."""
    return {
        "num_labels": len(splits.label_names),
        "train_samples": len(splits.train),
        "val_samples": len(splits.validation),
        "test_samples": len(splits.test),
        "num_parameters": sum(p.numel() for p in training.model.parameters()),
        "precision": accelerator.mixed_precision,
        "num_processes": accelerator.num_processes,
        "device": accelerator.device.type,
        **{f"skipped_texts.{split}": n for split, n in splits.skipped.items()},
    }


def test_and_log(
    cfg: Config,
    job: JobContext,
    accelerator: Accelerator,
    training: Training,
    test_loader: DataLoader,
    splits: TokenizedSplits,
    tokenizer: PreTrainedTokenizerBase,
    logger: RunLogger,
    ckpt: Checkpointer,
) -> dict[str, float]:
    """Test the loaded best epoch; log final metrics, the report, the confusion matrix, the
    per-example predictions and the model. Final metrics: ``test_*``, and the kept epoch's
    validation numbers as ``best_val_*``."""
    state = ckpt.state
    label_names = training.label_names
    start = time.perf_counter()
    test_logits, test_labels = predict(accelerator, training.model, test_loader, "test")
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
    logger.text(test.report(), names.REPORT_TXT_ARTIFACT)
    logger.dict(test.report(output_dict=True), names.REPORT_JSON_ARTIFACT)
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
        fig.savefig(job.output_dir / names.CONFUSION_ARTIFACT, dpi=120)
        logger.figure(fig, names.CONFUSION_ARTIFACT)
        plt.close(fig)
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
                tokenizer.save_pretrained(tmp)
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
