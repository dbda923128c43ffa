"""Typed schema of ``conf/compare.yaml``; ``tracking.*`` and ``paths.*`` are the training keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from emotion_lab.config import PathsConfig, TrackingConfig, _require


@dataclass
class CompareConfig:
    sweep: str = "latest"
    """A sweep id (its folder name under outputs/multirun/) or latest."""
    sweeps: list[str] = field(default_factory=list)
    """Sweep ids whose jobs are pooled into one report (sweeps=[a,b]); set, it replaces sweep."""
    output_dir: str | None = None
    """Where the report is written; null = <paths.outputs>/compare/<sweep id>."""
    register: bool = False
    """Register the best run's model (chosen on validation) in the MLflow model registry."""
    registered_model: str = "emotion_lab"
    """Name of the registered model a new version is added to."""
    alias: str = "champion"
    """Alias the new version takes (models:/<registered_model>@<alias>); empty = none."""
    a: list[str] = field(default_factory=list)
    """First compared configuration as key:value items, a=[init:pretrained,lr:1e-4]; keys left
    out are chosen on validation. Empty: the best of each init (else first swept key) value."""
    b: list[str] = field(default_factory=list)
    """Second compared configuration, named like ``a`` (both or neither)."""
    bootstrap_resamples: int = 10000
    """Bootstrap resamples of the paired intervals (more: steadier interval ends, slower)."""
    confidence: float = 0.95
    """Coverage of the bootstrap intervals."""
    bootstrap_seed: int = 0
    """Seed of the resampling, so the same sweep gives the same intervals."""
    search_storage: str | None = None
    """A search sweep's Optuna storage, if its URL holds credentials; null = the one its parent
    run names (optuna.storage tag, kept redacted)."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    debug: bool = False
    """Full tracebacks instead of one-line errors."""

    def __post_init__(self) -> None:
        _require(bool(self.a) == bool(self.b), "a/b", (self.a, self.b), "both named, or neither")
        for side in ("a", "b"):
            items = getattr(self, side)
            _require(
                all(":" in item for item in items), side, items, "key:value items ([init:scratch])"
            )
        _require(
            self.bootstrap_resamples >= 100,
            "bootstrap_resamples",
            self.bootstrap_resamples,
            "an int >= 100",
        )
        _require(0 < self.confidence < 1, "confidence", self.confidence, "a number in (0, 1)")


def register_schema() -> None:
    ConfigStore.instance().store(name="compare_schema", node=CompareConfig)
