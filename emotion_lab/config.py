"""Typed schema for the Hydra config tree.

Hydra validates every composed config against these dataclasses, so a typo'd key or a wrong
type fails at composition time, naming the key. Range checks live in ``__post_init__`` and run
when the entry point turns the DictConfig into these objects with ``OmegaConf.to_object``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from emotion_lab.errors import ConfigError

# The conf/ tree, as an absolute path: under `python -m`, Hydra would resolve a relative one as
# a Python package.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


class Init(str, Enum):
    scratch = "scratch"
    pretrained = "pretrained"


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid: expected {expected}.")


@dataclass
class ModelConfig:
    name_or_path: str = "distilgpt2"
    # Tokenizer id or dir; None means the model's own.
    tokenizer: str | None = None
    # Architecture overrides applied to the model config (e.g. a tiny GPT-2 for fast runs).
    config_overrides: dict[str, Any] = field(default_factory=dict)
    max_length: int = 128
    # sdpa: fused attention kernels for training. eager materialises attention weights; it
    # is only needed to look at them (the attention tools load it themselves).
    attn_implementation: str = "sdpa"

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer or self.name_or_path

    def __post_init__(self) -> None:
        _require(self.max_length > 0, "model.max_length", self.max_length, "a positive int")
        impls = ("sdpa", "eager")
        _require(
            self.attn_implementation in impls,
            "model.attn_implementation",
            self.attn_implementation,
            f"one of {impls}",
        )


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    # fused: one kernel for the whole update; on CPU with distilgpt2 the update measured 7x
    # faster than foreach, the whole step 1.25x (README, "Training speed").
    implementation: str = "fused"

    def __post_init__(self) -> None:
        names = ("adamw", "adam", "sgd")
        _require(self.name in names, "optimizer.name", self.name, f"one of {names}")
        impls = ("fused", "foreach", "for_loop")
        _require(
            self.implementation in impls,
            "optimizer.implementation",
            self.implementation,
            f"one of {impls}",
        )
        _require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, ">= 0")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optimizer.betas",
            self.betas,
            "two numbers in [0, 1)",
        )


@dataclass
class DataConfig:
    path: str = "dair-ai/emotion"
    # Dataset configuration name on the hub (dair-ai/emotion has "split" and "unsplit").
    name: str | None = "split"
    text_column: str = "text"
    label_column: str = "label"
    train_split: str = "train"
    eval_split: str = "validation"
    test_split: str = "test"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            _require(value is None or value > 0, f"data.{key}", value, "null or a positive int")
        _require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")


@dataclass
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 32
    eval_batch_size: int = 128
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    # auto: bf16 where the hardware has it (CUDA bf16, CPU with AMX/AVX512-BF16), else fp32.
    mixed_precision: str = "auto"
    # Stop after this many epochs without improvement of `monitor`; 0 disables.
    early_stopping_patience: int = 2
    monitor: str = "val_accuracy"
    log_every_n_steps: int = 20
    group_by_length: bool = True
    # Texts are sorted by length within mega-batches of this many batches: more cuts more
    # padding but makes batches less random (see README, "Speed").
    length_group_factor: int = 16
    # torch.compile the model: minutes of compilation, measured no faster on CPU (see README).
    compile: bool = False
    # One CPU process: scatter the sparse embedding gradient into a reused buffer instead of
    # allocating a fresh dense one each step (see emotion_lab/embedding_grad.py).
    reuse_embedding_grad: bool = True
    cpu: bool = False
    # Checkpoints (for resume=true) at epoch ends and every N optimizer steps (0 = epoch ends).
    checkpointing: bool = True
    checkpoint_every_n_steps: int = 200

    def __post_init__(self) -> None:
        _require(self.epochs > 0, "trainer.epochs", self.epochs, "a positive int")
        _require(self.batch_size > 0, "trainer.batch_size", self.batch_size, "a positive int")
        _require(self.eval_batch_size > 0, "trainer.eval_batch_size", self.eval_batch_size, "> 0")
        _require(
            self.grad_accum_steps > 0, "trainer.grad_accum_steps", self.grad_accum_steps, "> 0"
        )
        _require(self.max_grad_norm >= 0, "trainer.max_grad_norm", self.max_grad_norm, ">= 0")
        _require(0 <= self.warmup_ratio < 1, "trainer.warmup_ratio", self.warmup_ratio, "[0, 1)")
        schedulers = ("linear", "cosine", "constant")
        _require(self.scheduler in schedulers, "trainer.scheduler", self.scheduler, str(schedulers))
        precisions = ("auto", "no", "bf16", "fp16")
        _require(
            self.mixed_precision in precisions,
            "trainer.mixed_precision",
            self.mixed_precision,
            f"one of {precisions}",
        )
        monitors = ("val_accuracy", "val_macro_f1", "val_loss")
        _require(self.monitor in monitors, "trainer.monitor", self.monitor, f"one of {monitors}")
        _require(
            self.early_stopping_patience >= 0,
            "trainer.early_stopping_patience",
            self.early_stopping_patience,
            ">= 0",
        )
        _require(
            self.length_group_factor > 0,
            "trainer.length_group_factor",
            self.length_group_factor,
            "a positive int",
        )
        _require(
            self.log_every_n_steps > 0, "trainer.log_every_n_steps", self.log_every_n_steps, "> 0"
        )


@dataclass
class TrackingConfig:
    # MLflow tracking URI; the default is an sqlite store under paths.outputs.
    uri: str = "sqlite:///outputs/mlflow.db"
    experiment: str = "emotion_lab"
    # Where new experiments keep artifacts; null = next to the sqlite store, or the server's.
    artifact_location: str | None = None
    log_model: bool = True
    max_outage_s: float = 600.0
    """Seconds a job trains on, metrics buffered, while the server is away; then it stops."""

    def __post_init__(self) -> None:
        _require(self.max_outage_s > 0, "tracking.max_outage_s", self.max_outage_s, "> 0 seconds")


@dataclass
class PathsConfig:
    outputs: str = "outputs"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    init: Init = Init.pretrained
    lr: float = 5e-5
    seed: int = 42
    # Continue this job's interrupted MLflow run from its last checkpoint; skip it if finished.
    resume: bool = False
    # Show full tracebacks instead of one-line errors.
    debug: bool = False
    preflight: bool = True
    """Check first that every job's model, tokenizer, data and config can be had."""
    # The metric a job returns to an optimising sweeper (Optuna); null returns the result dict.
    # Only the best epoch's validation score qualifies: a search must never see the test set.
    objective: str | None = None

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", self.lr, "a positive float")
        best = f"best_{self.trainer.monitor}"
        _require(
            self.objective in (None, best),
            "objective",
            self.objective,
            f"null or {best!r} (the best epoch's trainer.monitor; to optimise another "
            "validation metric, set trainer.monitor to it)",
        )


def register_schemas() -> None:
    """Register the schema so config.yaml can extend it (``defaults: [schema, ...]``)."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
