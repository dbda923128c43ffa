"""The training loop: epochs of accumulated, clipped, mixed-precision steps, validation after
each epoch, early stopping, checkpoints, and the best epoch's weights kept."""

from __future__ import annotations

import math
import time

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emotion_lab.checkpoint import Checkpointer
from emotion_lab.config import TrainerConfig
from emotion_lab.data import LengthGroupedBatchSampler
from emotion_lab.errors import TrainingDiverged
from emotion_lab.metrics import EvalResult, evaluate_logits
from emotion_lab.tracking import RunLogger


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
        out = model(**batch).logits
        out, y = accelerator.gather_for_metrics((out, batch["labels"]))
        logits.append(out.float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def evaluate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    loader: DataLoader,
    label_names: list[str],
    desc: str,
) -> EvalResult:
    return evaluate_logits(*predict(accelerator, model, loader, desc), label_names)


def _improved(monitor: str, score: float, best: float | None) -> bool:
    if best is None:
        return True
    return score < best if monitor == "val_loss" else score > best


def fit(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    train_loader: DataLoader,
    val_loader: DataLoader,
    sampler: LengthGroupedBatchSampler,
    label_names: list[str],
    cfg: TrainerConfig,
    logger: RunLogger,
    ckpt: Checkpointer,
) -> dict[str, torch.Tensor]:
    """Train until the last epoch or early stop; returns the best epoch's weights.

    Progress lives in ``ckpt.state``, so a restored checkpoint continues mid-epoch.
    """
    state = ckpt.state
    best_weights = ckpt.load_best()
    show = accelerator.is_local_main_process
    while not state.finished and state.epoch <= cfg.epochs:
        epoch = state.epoch
        sampler.set_epoch(epoch)
        model.train()
        if state.batches_done:
            # The interrupted run drew this epoch's loader seed from the torch RNG before the
            # checkpoint; drawing it again here would shift every later dropout mask.
            rng = torch.get_rng_state()
            loader = iter(accelerator.skip_first_batches(train_loader, state.batches_done))
            torch.set_rng_state(rng)
        else:
            loader = train_loader
        # Losses stay on the device; .item() only at logging intervals (no per-step host sync).
        window_loss = torch.zeros((), device=accelerator.device)
        epoch_loss = torch.zeros((), device=accelerator.device)
        window_n = epoch_n = samples = 0
        # This epoch's training time is what train_seconds gains; checkpoint writes are not in it.
        trained_before = state.train_seconds
        start = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            initial=state.batches_done,
            total=len(train_loader),
            disable=not show,
        )
        for batch in bar:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            window_loss += loss.detach()
            epoch_loss += loss.detach()
            window_n += 1
            epoch_n += 1
            samples += batch["labels"].shape[0]
            state.batches_done += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            if state.step % cfg.log_every_n_steps == 0:
                train_loss = accelerator.reduce(window_loss, "mean").item() / window_n
                _check_finite(train_loss, state.step, scheduler)
                logger.metrics(
                    {"train_loss": train_loss, "lr": scheduler.get_last_lr()[0]}, state.step
                )
                bar.set_postfix(loss=f"{train_loss:.4f}")
                window_loss.zero_()
                window_n = 0
            if ckpt.step_due():
                state.train_seconds += time.perf_counter() - start
                ckpt.save()
                start = time.perf_counter()
        state.train_seconds += time.perf_counter() - start
        seconds = state.train_seconds - trained_before

        epoch_train_loss = accelerator.reduce(epoch_loss, "mean").item() / max(epoch_n, 1)
        _check_finite(epoch_train_loss, state.step, scheduler)
        eval_start = time.perf_counter()
        val = evaluate(accelerator, model, val_loader, label_names, desc="validation")
        eval_seconds = time.perf_counter() - eval_start
        record = {
            "epoch": epoch,
            "epoch_train_loss": epoch_train_loss,
            "train_samples_per_s": samples * accelerator.num_processes / max(seconds, 1e-9),
            "val_samples_per_s": val.n / max(eval_seconds, 1e-9),
            **val.scalars("val"),
        }
        state.history.append(record)
        logger.metrics(record, state.step)
        if show:
            tqdm.write(
                f"epoch {epoch}: train_loss {epoch_train_loss:.4f}  val_loss {val.loss:.4f}  "
                f"val_accuracy {val.accuracy:.4f}  val_macro_f1 {val.macro_f1:.4f}  "
                f"({record['train_samples_per_s']:.0f} samples/s)"
            )
        if _improved(cfg.monitor, record[cfg.monitor], state.best_score):
            state.best_epoch, state.best_score, state.stale = epoch, record[cfg.monitor], 0
            weights = accelerator.unwrap_model(model).state_dict()
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
            ckpt.save_best(best_weights)
        else:
            state.stale += 1
        state.epoch, state.batches_done = epoch + 1, 0
        patience = cfg.early_stopping_patience
        if (patience and state.stale >= patience) or state.epoch > cfg.epochs:
            state.finished = True
            if show and state.epoch <= cfg.epochs:
                tqdm.write(f"early stopping: no {cfg.monitor} gain in {state.stale} epochs")
        ckpt.save()
    return best_weights


def _check_finite(loss: float, step: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: train loss is {loss} at step {step} "
            f"(lr {scheduler.get_last_lr()[0]:.3g}). Lower lr, or keep trainer.max_grad_norm > 0."
        )
