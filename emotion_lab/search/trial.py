"""The job's side of a search: after each epoch it reports its monitored validation score to its
Optuna trial, through the storage (so it works in another process or on another machine), and
stops when the study's pruner says so.

Only the main process talks to the storage; in a multi-process job it tells the other ranks
whether to stop, so that all of them stop after the same epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from mlflow.entities import Run

from emotion_lab.config import Config, TrialConfig
from emotion_lab.store import names
from emotion_lab.store.writer import RunLogger

if TYPE_CHECKING:
    import optuna

    from emotion_lab.train.loop import TrainState


class TrialPruned(Exception):
    """The pruner stopped this trial after ``epoch``: its run closes FINISHED, untested."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


class TrialReporter:
    """Reports each epoch's ``monitor`` score to trial ``cfg.number`` of ``cfg.study``."""

    def __init__(self, cfg: TrialConfig, monitor: str, accelerator: Accelerator) -> None:
        assert cfg.storage is not None and cfg.study is not None and cfg.number is not None
        self.monitor = monitor
        self.accelerator = accelerator
        self.trial: optuna.Trial | None = None
        if accelerator.is_main_process:
            # Imported here: jobs outside a search do not load Optuna.
            import optuna

            from emotion_lab.search.study import load_pruner, open_storage, trial_id

            storage = open_storage(cfg.storage)
            study = optuna.load_study(study_name=cfg.study, storage=storage)
            study.pruner = load_pruner(study)
            self.trial = optuna.Trial(study, trial_id(storage, cfg.study, cfg.number))

    def __call__(self, state: TrainState) -> None:
        """At an epoch's end (``state.history[-1]``): report, and raise ``TrialPruned`` if told."""
        record = state.history[-1]
        epoch = int(record["epoch"])
        prune = False
        if self.trial is not None:
            self.trial.report(float(record[self.monitor]), step=epoch)
            prune = not state.finished and self.trial.should_prune()
        if self.accelerator.num_processes > 1:
            prune = broadcast_object_list([prune])[0]
        if prune:
            raise TrialPruned(epoch)


def search_trial(cfg: Config, accelerator: Accelerator) -> TrialReporter | None:
    """The reporter of a job that is a search's trial (``trial.*`` set by the sweeper)."""
    if cfg.trial.study is None:
        return None
    return TrialReporter(cfg.trial, cfg.trainer.monitor, accelerator)


def record_pruned(logger: RunLogger, state: TrainState, pruned: TrialPruned) -> dict[str, float]:
    """Tag the run as pruned after that epoch; log how much it trained. Returns its result."""
    logger.tags({names.PRUNED_TAG: str(pruned.epoch)})
    metrics = {"epochs_run": len(state.history), "train_seconds": state.train_seconds}
    logger.metrics(metrics, step=state.step)
    return {**metrics, names.PRUNED_TAG: pruned.epoch}


def pruned_metrics(run: Run) -> dict[str, float]:
    """A finished run's pruned marker, for a job skipped on resume."""
    epoch = run.data.tags.get(names.PRUNED_TAG)
    return {} if epoch is None else {names.PRUNED_TAG: int(epoch)}
