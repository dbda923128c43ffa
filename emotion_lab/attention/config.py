"""Typed schema of ``conf/attention.yaml``; Hydra validates every key against it."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from emotion_lab.config import DataConfig, Init, ModelConfig, PathsConfig, TrackingConfig
from emotion_lab.errors import ConfigError


@dataclass
class AttentionConfig:
    # What to explain: an MLflow run (its `model/` artifact), or every FINISHED job of a sweep
    # (the best scratch and the best pretrained run, compared). Neither: `model` + `init`.
    run_id: str | None = None
    # A second run: both are analysed and compared (differences are compare - run).
    compare_run_id: str | None = None
    sweep_id: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    init: Init = Init.pretrained
    # Seeds the fresh weights of init=scratch and the sample of the split.
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    # Split sampled for the statistics; null = data.eval_split.
    split: str | None = None
    num_texts: int = 300
    # Your own texts instead of a sample of the split; the first one is drawn.
    text: str | None = None
    texts: list[str] = field(default_factory=list)
    batch_size: int = 64
    # Drawn for the example text: one head of one layer, and all heads of that layer (-1 = last).
    layer: int = -1
    head: int = 0
    # Which sampled text is drawn when no text is given.
    example_index: int = 0
    top_words: int = 15
    # Words seen fewer times are left out of the ranking (their averages are noise).
    min_word_count: int = 5
    # Also log one metric per head and statistic (layers x heads x 5); per-layer means always.
    per_head_metrics: bool = False
    # bertviz head_view/model_view HTML of the example text, when bertviz is installed.
    bertviz: bool = True
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    debug: bool = False

    def __post_init__(self) -> None:
        positive = ("num_texts", "batch_size", "top_words", "min_word_count")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not valid: expected > 0.")
        if self.example_index < 0:
            raise ConfigError(f"example_index={self.example_index} is not valid: expected >= 0.")
        if self.sweep_id and (self.run_id or self.compare_run_id):
            raise ConfigError(
                "give either sweep_id=... (compares its best scratch and pretrained runs) or "
                "run_id=... [compare_run_id=...], not both."
            )
        if self.compare_run_id and not self.run_id:
            raise ConfigError("compare_run_id needs run_id: the run it is compared with.")

    @property
    def all_texts(self) -> list[str]:
        return ([self.text] if self.text else []) + list(self.texts)


def register_schema() -> None:
    ConfigStore.instance().store(name="attention_schema", node=AttentionConfig)
