"""Typed schema of ``conf/compare.yaml``; ``tracking.*`` and ``paths.*`` are the training keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from emotion_lab.config import PathsConfig, TrackingConfig


@dataclass
class CompareConfig:
    # A sweep id (its folder name under outputs/multirun/) or "latest".
    sweep: str = "latest"
    # Where the table and figures are written; null = <paths.outputs>/compare/<sweep id>.
    output_dir: str | None = None
    # Register the best run's model (highest validation accuracy) in the MLflow model registry.
    register: bool = False
    registered_model: str = "emotion_lab"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    debug: bool = False


def register_schema() -> None:
    ConfigStore.instance().store(name="compare_schema", node=CompareConfig)
