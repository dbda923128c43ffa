"""Errors a user can fix. Their message is the whole story: it is printed as one line."""


class UserError(Exception):
    """Bad input or environment: printed as one line, never with a traceback."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class ModelError(UserError):
    pass


class TrackingError(UserError):
    pass


class TrackingOutage(TrackingError):
    """The tracking server stayed away longer than tracking.max_outage_s: the job stopped."""


class PreflightError(UserError):
    """A model, tokenizer, dataset or job config of a run or sweep cannot be had."""


class SearchError(UserError):
    """A hyperparameter search that cannot run or found nothing (hparams_search=optuna)."""


class TrainingDiverged(UserError):
    pass


class NotRequeued(UserError):
    """A cluster job stopped for a time limit or preemption that submitit could not requeue."""


class DiskFull(UserError):
    """A write failed for lack of space; what was written before it is kept."""


def one_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
