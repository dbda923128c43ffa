"""The training loop: epochs of accumulated, clipped, mixed-precision steps, validation after
each epoch, early stopping, and the best epoch's weights kept in memory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emotion_lab.config import TrainerConfig
from emotion_lab.data import LengthGroupedBatchSampler
from emotion_lab.metrics import EvalResult, evaluate_logits
from emotion_lab.tracking import RunLogger


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    best_state: dict[str, torch.Tensor]
    epochs_run: int
    steps: int
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


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
) -> FitResult:
    step, best_epoch, best_score, best_state, stale = 0, 0, None, {}, 0
    history: list[dict[str, float]] = []
    train_seconds = 0.0
    show = accelerator.is_local_main_process
    for epoch in range(1, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        # Losses stay on the device; .item() only at logging intervals (no per-step host sync).
        window_loss = torch.zeros((), device=accelerator.device)
        epoch_loss = torch.zeros((), device=accelerator.device)
        window_n = epoch_n = samples = 0
        start = time.perf_counter()
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not show)
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
            if accelerator.sync_gradients:
                step += 1
                if step % cfg.log_every_n_steps == 0:
                    train_loss = accelerator.reduce(window_loss, "mean").item() / window_n
                    logger.metrics(
                        {"train_loss": train_loss, "lr": scheduler.get_last_lr()[0]}, step
                    )
                    bar.set_postfix(loss=f"{train_loss:.4f}")
                    window_loss.zero_()
                    window_n = 0
        seconds = time.perf_counter() - start
        train_seconds += seconds

        val = evaluate(accelerator, model, val_loader, label_names, desc="validation")
        record = {
            "epoch": epoch,
            "epoch_train_loss": accelerator.reduce(epoch_loss, "mean").item() / max(epoch_n, 1),
            "train_samples_per_s": samples * accelerator.num_processes / seconds,
            **val.scalars("val"),
        }
        history.append(record)
        logger.metrics(record, step)
        score = record[cfg.monitor]
        if show:
            tqdm.write(
                f"epoch {epoch}: train_loss {record['epoch_train_loss']:.4f}  "
                f"val_loss {val.loss:.4f}  val_accuracy {val.accuracy:.4f}  "
                f"val_macro_f1 {val.macro_f1:.4f}  ({record['train_samples_per_s']:.0f} samples/s)"
            )
        if _improved(cfg.monitor, score, best_score):
            best_epoch, best_score, stale = epoch, score, 0
            state = accelerator.unwrap_model(model).state_dict()
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        else:
            stale += 1
            if cfg.early_stopping_patience and stale >= cfg.early_stopping_patience:
                if show:
                    tqdm.write(f"early stopping: no {cfg.monitor} gain in {stale} epochs")
                break
    return FitResult(
        best_epoch=best_epoch,
        best_score=float(best_score),
        best_state=best_state,
        epochs_run=len(history),
        steps=step,
        train_seconds=train_seconds,
        history=history,
    )
