"""Typed schema of ``conf/attention.yaml``; Hydra validates every key against it."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from emotion_lab.config import DataConfig, Init, ModelConfig, PathsConfig, TrackingConfig
from emotion_lab.errors import ConfigError


@dataclass
class AttentionConfig:
    run_id: str | None = None
    """The MLflow run to explain (its model/ artifact); with no run_id or sweep_id: model + init."""
    compare_run_id: str | None = None
    """A second run: both are analysed and compared (differences are compare - run)."""
    sweep_id: str | None = None
    """A sweep: the two configurations compare picks (on validation), each's best seed, compared."""
    model: ModelConfig = field(default_factory=ModelConfig)
    init: Init = Init.pretrained
    """With no run: scratch or pretrained weights of model.name_or_path."""
    seed: int = 42
    """Seeds the fresh weights of init=scratch and the sample of the split."""
    data: DataConfig = field(default_factory=DataConfig)
    split: str | None = None
    """Split sampled for the statistics; null = data.eval_split."""
    num_texts: int = 300
    """Size of the sample the statistics are taken over."""
    text: str | None = None
    """Your own text instead of a sample of the split (it is the one drawn)."""
    texts: list[str] = field(default_factory=list)
    """Your own texts instead of a sample of the split; the first one is drawn."""
    batch_size: int = 64
    """Texts per forward pass."""
    layer: int = -1
    """Layer drawn for the example text (-1 = last): one head, and all heads of that layer."""
    head: int = 0
    """Head drawn for the example text."""
    example_index: int = 0
    """Which sampled text is drawn when no text is given."""
    top_words: int = 15
    """Words listed in the ranking of attention received."""
    min_word_count: int = 5
    """Words seen fewer times are left out of the ranking (their averages are noise)."""
    per_head_metrics: bool = False
    """Also log one metric per head and statistic; per-layer means are always logged."""
    bertviz: bool = True
    """bertviz head_view/model_view HTML of the example text, when bertviz is installed."""
    causal: bool = True
    """Causal analysis of each run: head ablation and gradients, word attributions, faithfulness."""
    num_causal_texts: int = 120
    """Texts of the causal analysis: a stratified, seeded sample of the split (equal per class)."""
    ig_steps: int = 20
    """Integrated-gradients steps (midpoint rule); the completeness error is reported."""
    random_seeds: int = 5
    """Random rankings the faithfulness control is averaged over."""
    bootstrap_resamples: int = 1000
    """Bootstrap resamples over texts behind every 95% interval."""
    min_class_word_count: int = 3
    """Words seen fewer times in a class are not ranked among the class's words."""
    num_examples: int = 6
    """Example texts drawn coloured by attribution (misclassified ones first)."""
    match_texts: int = 100
    """Texts whose attention matches the heads of two models (Jensen-Shannon, Hungarian)."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    debug: bool = False
    """Full tracebacks instead of one-line errors."""

    def __post_init__(self) -> None:
        positive = (
            "num_texts",
            "batch_size",
            "top_words",
            "min_word_count",
            "num_causal_texts",
            "ig_steps",
            "random_seeds",
            "bootstrap_resamples",
            "min_class_word_count",
            "match_texts",
        )
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
