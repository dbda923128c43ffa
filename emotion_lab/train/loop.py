"""The training loop: epochs of accumulated, clipped, mixed-precision steps; at each epoch's end
validation, early stopping and the best weights kept; checkpoints all along.

``fit`` is the whole story in one screen; ``train_epoch`` and ``end_epoch`` are its two halves.
The loop's state (``TrainState``) lives here and is saved with every checkpoint
(``ckpt.state``), so a restored checkpoint continues mid-epoch; ``BestWeights`` owns the best
epoch's weights; ``EpochMeter`` keeps an epoch's running sums.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emotion_lab.config import TrainerConfig
from emotion_lab.errors import TrainingDiverged
from emotion_lab.faults import fault_point
from emotion_lab.stopping import Stopped, deferred, requested
from emotion_lab.store.names import VAL_LOSS
from emotion_lab.train.checkpoint import Checkpointer
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
    # Clips the gradients to a norm (accelerator.clip_grad_norm_ when None); the embedding's
    # row-aware clipping (emotion_lab.train.embedding_grad) goes here.
    clip_grad_norm_: Callable[[Iterable[torch.Tensor], float], torch.Tensor] | None = None
    # Sees each epoch once it is checkpointed: a search trial reports to its study there, and
    # may stop (emotion_lab.search.trial).
    after_epoch: Callable[[TrainState], None] | None = None


@dataclass
class TrainState:
    """Where the loop is, and what early stopping remembers (saved with every checkpoint)."""

    epoch: int = 1  # the epoch in progress, 1-based
    batches_done: int = 0  # batches of that epoch already trained
    step: int = 0  # optimizer steps so far
    best_epoch: int = 0
    best_score: float | None = None
    stale: int = 0  # epochs since the last improvement
    finished: bool = False  # training loop over (all epochs, or early stop)
    train_seconds: float = 0.0
    # Running loss sums of the current logging window and epoch, and their batch counts.
    window_loss: float = 0.0
    window_n: int = 0
    epoch_loss: float = 0.0
    epoch_n: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    # The kept epoch's validation logits and labels, in the loader's order: its per-example
    # predictions are logged at the end without another pass over the validation split.
    best_val_logits: torch.Tensor | None = None
    best_val_labels: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class BestWeights:
    """The one owner of the best epoch's weights: ``keep`` them when an epoch improves,
    ``restore`` them into the model once training is over.

    They are kept in the checkpoint folder (so a resumed job still has them), and in memory
    only without one. The last epoch's weights, when they are the best, are never copied: the
    model and its last checkpoint hold them already.
    """

    def __init__(self, accelerator: Accelerator, ckpt: Checkpointer) -> None:
        self.accelerator = accelerator
        self.ckpt = ckpt
        self._in_memory: dict[str, torch.Tensor] = {}

    def keep(self, model: torch.nn.Module) -> None:
        weights = self.accelerator.unwrap_model(model).state_dict()
        if self.ckpt.enabled:
            self.ckpt.save_best(weights)
        else:
            self._in_memory = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}

    def restore(self, model: torch.nn.Module) -> None:
        """Load the kept weights into ``model``, unless the last epoch trained was the best."""
        state = self.ckpt.state
        if state.best_epoch == state.epoch - 1:
            return
        weights = self._in_memory or self.ckpt.load_best()
        if weights:
            self.accelerator.unwrap_model(model).load_state_dict(weights)
        self._in_memory = {}


@dataclass
class Loop:
    """What every epoch works with."""

    accelerator: Accelerator
    training: Training
    cfg: TrainerConfig
    log_metrics: LogMetrics
    ckpt: Checkpointer
    best: BestWeights

    @property
    def state(self) -> TrainState:
        return self.ckpt.state


def fit(
    accelerator: Accelerator,
    training: Training,
    cfg: TrainerConfig,
    log_metrics: LogMetrics,
    ckpt: Checkpointer,
) -> None:
    """Train until the last epoch or an early stop; the model then holds the best epoch's
    weights.

    A stop signal (emotion_lab.stopping) waits for the end of the current optimizer step, or of
    the epoch's validation, then the job stops with a checkpoint at that step.
    """
    loop = Loop(accelerator, training, cfg, log_metrics, ckpt, BestWeights(accelerator, ckpt))
    with deferred():
        while not loop.state.finished:
            record = train_epoch(loop)
            end_epoch(loop, record)
            if loop.state.finished:
                # Training is over: the optimizer's moments (twice the weights) are neither
                # written to the last checkpoint nor kept through testing, where they would
                # set the peak.
                training.optimizer.state.clear()
            ckpt.save()
            if stop := requested(accelerator, ckpt.state.step):
                raise _stopped(stop, ckpt)
            if training.after_epoch is not None:
                training.after_epoch(loop.state)
    loop.best.restore(training.model)


class EpochMeter:
    """An epoch's running numbers: the loss sums of the logging window and of the epoch, the
    samples trained and the training time (checkpoint writes are not in it).

    Losses stay on the device; ``.item()`` only at logging intervals and checkpoints. The sums
    are part of the checkpoint (``TrainState``), so a window or an epoch cut by a resume
    averages the same losses as an uninterrupted one.
    """

    def __init__(self, accelerator: Accelerator, state: TrainState) -> None:
        self.accelerator = accelerator
        self.state = state
        device = accelerator.device
        self.window = torch.tensor(state.window_loss, dtype=torch.float32, device=device)
        self.epoch = torch.tensor(state.epoch_loss, dtype=torch.float32, device=device)
        self.samples = 0
        self.trained_before = state.train_seconds
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, samples: int) -> None:
        self.window += loss.detach()
        self.epoch += loss.detach()
        self.state.window_n += 1
        self.state.epoch_n += 1
        self.samples += samples

    def _mean(self, total: torch.Tensor) -> float:
        # Mean over processes: each restores the same sums, and their mean is unchanged.
        return self.accelerator.reduce(total, "mean").item()

    def window_loss(self) -> float:
        """The logging window's mean loss; the next window starts."""
        loss = self._mean(self.window) / self.state.window_n
        self.window.zero_()
        self.state.window_n = 0
        return loss

    @contextmanager
    def paused(self) -> Iterator[None]:
        """For a checkpoint: the sums and time so far go into the state; the write's time is
        not training time."""
        self.state.train_seconds += time.perf_counter() - self.start
        self.state.window_loss = self._mean(self.window)
        self.state.epoch_loss = self._mean(self.epoch)
        yield
        self.start = time.perf_counter()

    def close(self) -> dict[str, float]:
        """The epoch's mean train loss and speed; the next epoch starts new sums (saved with the
        epoch-end checkpoint)."""
        state = self.state
        state.train_seconds += time.perf_counter() - self.start
        seconds = state.train_seconds - self.trained_before
        epoch_train_loss = self._mean(self.epoch) / max(state.epoch_n, 1)
        state.window_loss, state.window_n, state.epoch_loss, state.epoch_n = 0.0, 0, 0.0, 0
        processes = self.accelerator.num_processes
        return {
            "epoch_train_loss": epoch_train_loss,
            "train_samples_per_s": self.samples * processes / max(seconds, 1e-9),
        }


def train_epoch(loop: Loop) -> dict[str, float]:
    """The rest of the current epoch (all of it, or what a resumed checkpoint left)."""
    accelerator, training, cfg, state = loop.accelerator, loop.training, loop.cfg, loop.state
    model, optimizer, scheduler = training.model, training.optimizer, training.scheduler
    # The prepared loader passes its epoch to the sampler when iteration starts, and counts
    # epochs itself from 0 in each process: set it from the state, so a resumed process
    # shuffles epoch N as the uninterrupted one did (skip_first_batches copies it).
    training.train_loader.set_epoch(state.epoch)
    model.train()
    loader = training.train_loader
    if state.batches_done:
        loader = accelerator.skip_first_batches(training.train_loader, state.batches_done)
    clip_grad_norm_ = training.clip_grad_norm_ or accelerator.clip_grad_norm_
    meter = EpochMeter(accelerator, state)
    bar = tqdm(
        loader,
        desc=f"epoch {state.epoch}/{cfg.epochs}",
        unit="batch",
        initial=state.batches_done,
        total=len(training.train_loader),
        disable=not accelerator.is_local_main_process,
    )
    for batch in bar:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        meter.add(loss, batch["labels"].shape[0])
        state.batches_done += 1
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        if state.step % cfg.log_every_n_steps == 0:
            train_loss = meter.window_loss()
            _check_finite(train_loss, state.step, scheduler)
            loop.log_metrics(
                {"train_loss": train_loss, "lr": scheduler.get_last_lr()[0]}, state.step
            )
            bar.set_postfix(loss=f"{train_loss:.4f}")
        fault_point("train_step")
        stop = requested(accelerator, state.step)
        if loop.ckpt.step_due() or stop:
            with meter.paused():
                loop.ckpt.save()
            if stop:
                raise _stopped(stop, loop.ckpt)
    record = {"epoch": state.epoch, **meter.close()}
    _check_finite(record["epoch_train_loss"], state.step, scheduler)
    return record


def end_epoch(loop: Loop, record: dict[str, float]) -> None:
    """Validate, record, keep the weights if they are the best so far, early-stop."""
    accelerator, training, cfg, state = loop.accelerator, loop.training, loop.cfg, loop.state
    start = time.perf_counter()
    logits, labels = predict(accelerator, training.model, training.val_loader, "validation")
    val = evaluate_logits(logits, labels, training.label_names)
    record |= {"val_samples_per_s": val.n / max(time.perf_counter() - start, 1e-9)}
    record |= val.scalars("val")
    state.history.append(record)
    loop.log_metrics(record, state.step)
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
    if improved and not state.finished:
        loop.best.keep(training.model)


def _stopped(signum: int, ckpt: Checkpointer) -> Stopped:
    """The stop, raised once the checkpoint at its step is written."""
    why = "" if ckpt.enabled else "trainer.checkpointing=false"
    return Stopped(signum, ckpt.state.step, saved=ckpt.enabled, why=why)


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
    return score < best if monitor == VAL_LOSS else score > best


def _check_finite(loss: float, step: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: train loss is {loss} at step {step} "
            f"(lr {scheduler.get_last_lr()[0]:.3g}). Lower lr, or keep trainer.max_grad_norm > 0."
        )
