"""The search sweeper's config: ``hydra/sweeper=emotion_lab_search``, with a sampler group
(``hydra/sweeper/sampler=tpe|random|grid|cmaes``) and a pruner group
(``hydra/sweeper/pruner=median|successive_halving|hyperband|none``). A sampler or pruner is any
Optuna class, built from its ``_target_`` and keyword arguments."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

NAME = "emotion_lab_search"

SAMPLERS: dict[str, dict[str, Any]] = {
    # Model-based after n_startup_trials random ones; seeded by the search config (${seed}).
    "tpe": {"_target_": "optuna.samplers.TPESampler", "seed": None, "n_startup_trials": 5},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    # Every combination of choice(...) and range(...) values once, in a seeded order.
    "grid": {"_target_": "optuna.samplers.GridSampler", "seed": None},
    # Needs the cmaes package: pip install 'emotion-lab[cmaes]'.
    "cmaes": {"_target_": "optuna.samplers.CmaEsSampler", "seed": None, "n_startup_trials": 1},
}

# Steps are epochs: a trial reports its monitored validation score after each one.
PRUNERS: dict[str, dict[str, Any]] = {
    # Stop a trial whose score is worse than the median of earlier trials at the same epoch,
    # once n_startup_trials have finished; a trial can be stopped after epoch n_warmup_steps at
    # the earliest (1: after its first epoch).
    "median": {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 5,
        "n_warmup_steps": 1,
    },
    "successive_halving": {
        "_target_": "optuna.pruners.SuccessiveHalvingPruner",
        "min_resource": 1,
        "reduction_factor": 3,
    },
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "reduction_factor": 3,
    },
    # Trials still report each epoch (the dashboard draws them), and none is stopped.
    "none": {"_target_": "optuna.pruners.NopPruner"},
}


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.emotion_lab_search.sweeper.SearchSweeper"
    _recursive_: bool = False
    """Sampler and pruner stay configs until the sweeper builds them (the grid needs the space)."""
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    """An Optuna sampler: hydra/sweeper/sampler=tpe (default), random, grid or cmaes."""
    pruner: Any = MISSING
    """An Optuna pruner: hydra/sweeper/pruner=median (default), successive_halving, hyperband,
    none."""
    n_trials: int = 20
    """Trials in the study in all (with resume=true, those of earlier attempts count)."""
    n_jobs: int = 1
    """Trials launched at a time (in parallel with the joblib or SLURM launcher)."""
    storage: str | None = None
    """An Optuna storage URL (sqlite:///..., postgresql://...) or a journal file; null =
    <paths.outputs>/optuna.journal."""
    study_name: str | None = None
    """The study's name in the storage; null = the sweep's id (a resumed sweep keeps it)."""
    enqueue: list[Any] = field(default_factory=list)
    """Parameter sets tried first, e.g. [{lr: 3e-4}] (a known good config as a baseline)."""
    params: dict[str, str] = field(default_factory=dict)
    """The search space in Hydra's sweep grammar: choice, range, interval, tag(log, interval)."""


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name=NAME, node=SearchSweeperConf, provider="emotion_lab")
    for name, node in SAMPLERS.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="emotion_lab")
    for name, node in PRUNERS.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="emotion_lab")
