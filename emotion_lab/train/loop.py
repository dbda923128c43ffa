"""The training loop: epochs of accumulated, clipped, mixed-precision steps; at each epoch's end
validation, early stopping and the best weights kept; checkpoints all along.

``fit`` is the whole story in one screen; ``train_epoch`` and ``end_epoch`` are its two halves.
Progress lives in ``ckpt.state``, so a restored checkpoint continues mid-epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emotion_lab.config import TrainerConfig
from emotion_lab.errors import TrainingDiverged
from emotion_lab.faults import fault_point
from emotion_lab.train.checkpoint import Checkpointer, TrainState
from emotion_lab.train.metrics import evaluate_logits

# Logs metrics at an optimizer step: the run logger's ``metrics``, or anything alike.
LogMetrics = Callable[[Mapping[str, float], int], None]


@dataclass
class Training:
    """What the loop trains with, prepared by Accelerate."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: DataLoader
    val_loader: DataLoader
    label_names: list[str]


def fit(
    accelerator: Accelerator,
    t: Training,
    cfg: TrainerConfig,
    log_metrics: LogMetrics,
    ckpt: Checkpointer,
    after_epoch: Callable[[TrainState], None] | None = None,
) -> dict[str, torch.Tensor] | None:
    """Train until the last epoch or an early stop; returns the best epoch's weights, or None
    when the model holds them already (the last epoch trained was the best).

    ``after_epoch`` sees each epoch once it is checkpointed (a search trial reports to its
    study there, and may stop: emotion_lab.search.trial)."""
    kept: dict[str, torch.Tensor] = {}
    while not ckpt.state.finished:
        record = train_epoch(accelerator, t, cfg, log_metrics, ckpt)
        kept = end_epoch(accelerator, t, cfg, log_metrics, ckpt, record) or kept
        if ckpt.state.finished:
            # Training is over: the optimizer's moments (twice the weights) are neither written
            # to the last checkpoint nor kept through testing, where they would set the peak.
            t.optimizer.state.clear()
        ckpt.save()
        if after_epoch is not None:
            after_epoch(ckpt.state)
    state = ckpt.state
    if state.best_epoch == state.epoch - 1:
        return None
    return kept or ckpt.load_best()


def train_epoch(
    accelerator: Accelerator,
    t: Training,
    cfg: TrainerConfig,
    log_metrics: LogMetrics,
    ckpt: Checkpointer,
) -> dict[str, float]:
    """The rest of the current epoch (all of it, or what a resumed checkpoint left)."""
    state = ckpt.state
    # The prepared loader passes its epoch to the sampler when iteration starts, and counts
    # epochs itself from 0 in each process: set it from the state, so a resumed process
    # shuffles epoch N as the uninterrupted one did (skip_first_batches copies it).
    t.train_loader.set_epoch(state.epoch)
    t.model.train()
    loader = t.train_loader
    if state.batches_done:
        loader = accelerator.skip_first_batches(t.train_loader, state.batches_done)
    # Losses stay on the device; .item() only at logging intervals and checkpoints. Their
    # running sums are part of the checkpoint, so a window or an epoch cut by a resume
    # averages the same losses as an uninterrupted one.
    window_loss = torch.tensor(state.window_loss, dtype=torch.float32, device=accelerator.device)
    epoch_loss = torch.tensor(state.epoch_loss, dtype=torch.float32, device=accelerator.device)
    samples = 0
    # This epoch's training time is what train_seconds gains; checkpoint writes are not in it.
    trained_before = state.train_seconds
    start = time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {state.epoch}/{cfg.epochs}",
        unit="batch",
        initial=state.batches_done,
        total=len(t.train_loader),
        disable=not accelerator.is_local_main_process,
    )
    for batch in bar:
        with accelerator.accumulate(t.model):
            loss = t.model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(t.model.parameters(), cfg.max_grad_norm)
            t.optimizer.step()
            t.scheduler.step()
            t.optimizer.zero_grad(set_to_none=True)
        window_loss += loss.detach()
        epoch_loss += loss.detach()
        state.window_n += 1
        state.epoch_n += 1
        samples += batch["labels"].shape[0]
        state.batches_done += 1
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        if state.step % cfg.log_every_n_steps == 0:
            train_loss = accelerator.reduce(window_loss, "mean").item() / state.window_n
            _check_finite(train_loss, state.step, t.scheduler)
            log_metrics({"train_loss": train_loss, "lr": t.scheduler.get_last_lr()[0]}, state.step)
            bar.set_postfix(loss=f"{train_loss:.4f}")
            window_loss.zero_()
            state.window_n = 0
        fault_point("train_step")
        if ckpt.step_due():
            state.train_seconds += time.perf_counter() - start
            # Mean over processes: each restores the same sums, and their mean is unchanged.
            state.window_loss = accelerator.reduce(window_loss, "mean").item()
            state.epoch_loss = accelerator.reduce(epoch_loss, "mean").item()
            ckpt.save()
            start = time.perf_counter()
    state.train_seconds += time.perf_counter() - start
    seconds = state.train_seconds - trained_before
    epoch_train_loss = accelerator.reduce(epoch_loss, "mean").item() / max(state.epoch_n, 1)
    # The next epoch starts new sums (saved with the epoch-end checkpoint).
    state.window_loss, state.window_n, state.epoch_loss, state.epoch_n = 0.0, 0, 0.0, 0
    _check_finite(epoch_train_loss, state.step, t.scheduler)
    return {
        "epoch": state.epoch,
        "epoch_train_loss": epoch_train_loss,
        "train_samples_per_s": samples * accelerator.num_processes / max(seconds, 1e-9),
    }


def end_epoch(
    accelerator: Accelerator,
    t: Training,
    cfg: TrainerConfig,
    log_metrics: LogMetrics,
    ckpt: Checkpointer,
    record: dict[str, float],
) -> dict[str, torch.Tensor] | None:
    """Validate, record, keep the weights if they are the best so far, early-stop.

    The best weights are kept in the checkpoint folder; only without one is a copy kept in
    memory, and returned.
    """
    state = ckpt.state
    start = time.perf_counter()
    logits, labels = predict(accelerator, t.model, t.val_loader, "validation")
    val = evaluate_logits(logits, labels, t.label_names)
    record |= {"val_samples_per_s": val.n / max(time.perf_counter() - start, 1e-9)}
    record |= val.scalars("val")
    state.history.append(record)
    log_metrics(record, state.step)
    if accelerator.is_local_main_process:
        tqdm.write(
            f"epoch {state.epoch}: train_loss {record['epoch_train_loss']:.4f}  "
            f"val_loss {val.loss:.4f}  val_accuracy {val.accuracy:.4f}  "
            f"val_macro_f1 {val.macro_f1:.4f}  ({record['train_samples_per_s']:.0f} samples/s)"
        )
    improved = _improved(cfg.monitor, record[cfg.monitor], state.best_score)
    if improved:
        state.best_epoch, state.best_score, state.stale = state.epoch, record[cfg.monitor], 0
        state.best_val_logits, state.best_val_labels = logits, labels
    else:
        state.stale += 1
    state.epoch, state.batches_done = state.epoch + 1, 0
    patience = cfg.early_stopping_patience
    if (patience and state.stale >= patience) or state.epoch > cfg.epochs:
        state.finished = True
        if accelerator.is_local_main_process and state.epoch <= cfg.epochs:
            tqdm.write(f"early stopping: no {cfg.monitor} gain in {state.stale} epochs")
    # The last epoch's weights, if the best, stay in the model and its last checkpoint.
    if not improved or state.finished:
        return None
    weights = accelerator.unwrap_model(t.model).state_dict()
    if ckpt.enabled:
        ckpt.save_best(weights)
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}


def best_epoch_record(state: TrainState) -> dict[str, float]:
    """The history entry of the epoch that was kept."""
    return next(r for r in state.history if r["epoch"] == state.best_epoch)


@torch.no_grad()
def predict(
    accelerator: Accelerator, model: torch.nn.Module, loader: DataLoader, desc: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of the whole split, gathered across processes without duplicates."""
    model.eval()
    logits, labels = [], []
    for batch in tqdm(
        loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process
    ):
        fault_point(desc)
        out = model(**batch).logits
        out, y = accelerator.gather_for_metrics((out, batch["labels"]))
        logits.append(out.float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def _improved(monitor: str, score: float, best: float | None) -> bool:
    if best is None:
        return True
    return score < best if monitor == "val_loss" else score > best


def _check_finite(loss: float, step: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: train loss is {loss} at step {step} "
            f"(lr {scheduler.get_last_lr()[0]:.3g}). Lower lr, or keep trainer.max_grad_norm > 0."
        )
