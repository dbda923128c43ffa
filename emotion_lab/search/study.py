"""A search's study: where it is stored, how it is opened by the sweeper and by each job, and
what the sweeper records on it for the jobs (the pruner) and for later (each trial's result).

The default storage is Optuna's journal file, ``<paths.outputs>/optuna.journal``: an append-only
log that every process writes under a file lock, so parallel trials (joblib, SLURM on a shared
filesystem) share it safely, and that optuna-dashboard reads. Any Optuna storage URL
(``sqlite:///...``, ``postgresql://...``, ``mysql://...``) can be given instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from emotion_lab.errors import SearchError, one_line
from emotion_lab.redaction import redact
from emotion_lab.store.names import VAL_LOSS

DEFAULT_JOURNAL = "optuna.journal"
# Study user attributes: the pruner's config (so that each job builds the same pruner), the
# objective and its direction.
PRUNER_ATTR = "emotion_lab.pruner"
OBJECTIVE_ATTR = "emotion_lab.objective"
# Trial user attribute: the job's result.json, so a resumed search can list earlier trials.
RESULT_ATTR = "emotion_lab.result"


def default_storage(outputs: str) -> str:
    return str((Path(outputs) / DEFAULT_JOURNAL).resolve())


def direction_of(monitor: str) -> str:
    """The search follows the score that picks each job's best epoch: lower loss, higher rest."""
    return "minimize" if monitor == VAL_LOSS else "maximize"


def open_storage(url: str) -> BaseStorage:
    """A database URL as Optuna's RDB storage; anything else is a journal file's path."""
    try:
        if "://" in url:
            return RDBStorage(url)
        path = Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except Exception as e:
        raise SearchError(
            f"hydra.sweeper.storage={redact(url)}: cannot open the Optuna storage "
            f"({redact(one_line(e))[:300]}). Give a writable journal file path or a database URL "
            "Optuna can reach (sqlite:///path.db, postgresql://...), or null for "
            f"<paths.outputs>/{DEFAULT_JOURNAL}."
        ) from e


def trial_id(storage: BaseStorage, study: str, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study), number
    )


def trial_count(storage: BaseStorage, study: str) -> int:
    """Trials of the study so far; 0 for a study not yet created."""
    if study not in {s.study_name for s in storage.get_all_studies()}:
        return 0
    return len(storage.get_all_trials(storage.get_study_id_from_name(study), deepcopy=False))


def load_pruner(study: optuna.Study) -> optuna.pruners.BasePruner:
    """The pruner the sweeper created the study with, from its config on the study."""
    from hydra.utils import instantiate

    config = study.user_attrs.get(PRUNER_ATTR)
    return instantiate(config) if config else optuna.pruners.NopPruner()


def record_result(storage: BaseStorage, study: str, number: int, result: dict[str, Any]) -> None:
    storage.set_trial_user_attr(trial_id(storage, study, number), RESULT_ATTR, json.dumps(result))
