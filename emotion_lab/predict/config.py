"""Typed schema of ``conf/predict.yaml``; ``tracking.*`` and ``paths.*`` are the training keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from emotion_lab.config import PathsConfig, TrackingConfig
from emotion_lab.errors import ConfigError


@dataclass
class PredictConfig:
    run_id: str | None = None
    """The MLflow run whose model/ artifact is used (the compare table lists run ids)."""
    model_uri: str | None = None
    """Instead of run_id: a registered model, models:/<name>@<alias> or models:/<name>/<version>,
    or runs:/<run id>/model."""
    text: str | None = None
    """One text to classify (quote it for Hydra when it has commas)."""
    input: str | None = None
    """A file of texts: .csv, .jsonl or .txt (one text per line)."""
    output: str | None = None
    """Where file predictions go (.csv or .jsonl); null = print them."""
    text_column: Any = None
    """The input's text column, or two for a sentence pair; null = the column(s) the run trained
    on (its data.text_column)."""
    batch_size: int = 64
    """Texts per batch (batches are sorted by length and padded to their longest text)."""
    max_length: int | None = None
    """Truncation length; null = the run's model.max_length."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    debug: bool = False
    """Full tracebacks instead of one-line errors."""


def check(cfg: PredictConfig) -> None:
    """Required-together keys; not in ``__post_init__``, which also runs on the empty defaults."""
    usage = "python -m emotion_lab.predict run_id=<id> text='...' (or input=texts.csv)"
    if bool(cfg.run_id) == bool(cfg.model_uri):
        raise ConfigError(
            f"give run_id (or model_uri=models:/<name>@<alias> instead): {usage}."
            if not cfg.run_id
            else "give run_id or model_uri, not both."
        )
    if (cfg.text is None) == (cfg.input is None):
        raise ConfigError(f"give exactly one of text=... and input=...: {usage}.")
    if cfg.output is not None and cfg.input is None:
        raise ConfigError("output= needs input=<file>; a single text= is printed.")
    if cfg.batch_size <= 0:
        raise ConfigError(f"batch_size={cfg.batch_size} is not valid: expected > 0.")
    columns = cfg.text_column
    if not (
        columns is None
        or isinstance(columns, str)
        or (isinstance(columns, list) and len(columns) in (1, 2))
    ):
        raise ConfigError(
            f"text_column={columns!r} is not valid: expected a column, or two for a pair."
        )
    if cfg.max_length is not None and cfg.max_length <= 0:
        raise ConfigError(f"max_length={cfg.max_length} is not valid: expected > 0.")


def register_schema() -> None:
    ConfigStore.instance().store(name="predict_schema", node=PredictConfig)
