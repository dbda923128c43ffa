"""The best epoch is what a job tests: kept on disk in the checkpoint folder (in memory only
without one), reloaded only when a later epoch was worse."""

from __future__ import annotations

import pytest
import torch

from emotion_lab.config import (
    Config,
    DataConfig,
    Init,
    ModelConfig,
    OptimizerConfig,
    TrainerConfig,
)
from emotion_lab.data import load_splits
from emotion_lab.train.checkpoint import BEST, Checkpointer
from emotion_lab.train.job import make_accelerator, prepare
from emotion_lab.train.loop import TrainState, fit
from emotion_lab.train.timing import Stopwatch
from tests.conftest import EMOTION


def _config(epochs: int) -> Config:
    return Config(
        optimizer=OptimizerConfig(name="sgd", momentum=0.0),
        model=ModelConfig(config_overrides={"n_layer": 2, "n_head": 2, "n_embd": 32}),
        data=DataConfig(path=str(EMOTION), max_train_samples=64, max_eval_samples=32),
        trainer=TrainerConfig(
            epochs=epochs,
            batch_size=16,
            early_stopping_patience=0,
            monitor="val_loss",
            scheduler="constant",
            warmup_ratio=0.0,
            mixed_precision="no",
            cpu=True,
        ),
        init=Init.scratch,
        lr=0.05,
    )


def _fit(cfg: Config, ckpt_root, ascend: bool) -> tuple[TrainState, dict[int, dict], dict]:
    """Train (with ``ascend``, up the gradient: every epoch's validation loss is worse than the
    one before, so the first epoch is the best); returns the final state, each epoch's weights
    as validated, and the weights the model holds once fit returns, as the job tests it."""
    accelerator = make_accelerator(cfg.trainer)
    data = load_splits(cfg.data)
    training = prepare(cfg, accelerator, data, Stopwatch()).training
    if ascend:
        schedule = training.scheduler.scheduler  # under Accelerate's wrapper
        schedule.base_lrs = [-lr for lr in schedule.base_lrs]
    ckpt = Checkpointer(accelerator, TrainState(), ckpt_root, 0)
    model = accelerator.unwrap_model(training.model)
    per_epoch: dict[int, dict] = {}

    def log_metrics(values, step):
        if "val_loss" in values:  # end of an epoch: validated, not yet compared
            per_epoch[int(values["epoch"])] = {k: v.clone() for k, v in model.state_dict().items()}

    fit(accelerator, training, cfg.trainer, log_metrics, ckpt)
    assert not training.optimizer.state, "optimizer moments must be dropped once training ends"
    return ckpt.state, per_epoch, model.state_dict()


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("checkpointing", [True, False], ids=["on-disk", "in-memory"])
def test_an_earlier_best_epoch_is_what_the_model_holds_after_fit(tmp_path, checkpointing):
    root = tmp_path / "ckpt" if checkpointing else None
    state, per_epoch, held = _fit(_config(3), root, ascend=True)
    assert state.best_epoch == 1, state.history
    _assert_same(held, per_epoch[1])
    assert not _equal(held, per_epoch[3]), "the last epoch's weights must have been replaced"
    assert (tmp_path / "ckpt" / BEST).exists() == checkpointing


def test_a_best_last_epoch_is_kept_without_reloading(tmp_path):
    state, per_epoch, held = _fit(_config(2), tmp_path / "ckpt", ascend=False)
    assert state.best_epoch == 2, state.history
    _assert_same(held, per_epoch[2])


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)
