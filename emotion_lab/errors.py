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


class TrainingDiverged(UserError):
    pass
