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
from emotion_lab.store.names import BEST_PREFIX, MONITORS, VAL_ACCURACY

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
    """Any hub id or local dir that AutoModelForSequenceClassification can load."""
    tokenizer: str | None = None
    """Tokenizer hub id or dir; null = the model's own."""
    config_overrides: dict[str, Any] = field(default_factory=dict)
    """Architecture fields set on the model config, e.g. a tiny GPT-2 (init=scratch only)."""
    max_length: int = 128
    """Truncation length in tokens; batches are padded to their own longest text, not to this."""
    attn_implementation: str = "sdpa"
    """sdpa (fused kernels, for training) or eager (materialises the attention weights)."""
    fused_gelu: bool = True
    """GPT-2's tanh GELU (gelu_new) as one fused kernel: the same function, rounded once."""

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
    """adamw, adam or sgd (pick with the optimizer group: optimizer=adam)."""
    weight_decay: float = 0.01
    """Decoupled weight decay (AdamW) or L2 penalty (Adam, SGD)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam's moment decay rates."""
    eps: float = 1e-8
    """Adam's denominator epsilon."""
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = False
    """SGD with Nesterov momentum."""
    implementation: str = "fused"
    """fused (one kernel per update, fastest: docs/benchmarks.md), foreach or for_loop."""
    lazy_embedding: bool = False
    """Adam/AdamW: update only the input-embedding rows a step touched (LazyAdam). Changes the
    method: untouched rows keep their moments and skip decay. Needs trainer.embedding_grad=rows."""

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
            not self.lazy_embedding or self.name != "sgd",
            "optimizer.lazy_embedding",
            self.lazy_embedding,
            "false with optimizer=sgd (the lazy update is Adam's and AdamW's)",
        )
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optimizer.betas",
            self.betas,
            "two numbers in [0, 1)",
        )


@dataclass
class DataFiles:
    """One file per split, e.g. data.files.train=a.csv data.files.test=b.jsonl."""

    train: str | None = None
    """The training file."""
    validation: str | None = None
    """The validation file; null = carved from train."""
    test: str | None = None
    """The test file; null = carved from train."""


@dataclass
class DataConfig:
    path: str = "dair-ai/emotion"
    """A hub id, a local dataset dir, a folder of train/validation/test files, or one file."""
    name: str | None = None
    """The dataset's configuration on the hub (dair-ai/emotion: split); null = its default."""
    files: DataFiles = field(default_factory=DataFiles)
    """Explicit files per split (data.files.train=a.csv data.files.test=b.jsonl); replaces path."""
    text_column: Any = "text"
    """The text column, or two columns ([premise, hypothesis]) tokenized as a sentence pair."""
    label_column: str = "label"
    """The label column: a ClassLabel, strings (names = their sorted set) or integer ids."""
    label_names: list[str] | None = None
    """Class names for integer labels (id i is label_names[i]), or the class order of strings."""
    train_split: str = "train"
    """The split trained on; it must exist."""
    eval_split: str = "validation"
    """The split that picks the best epoch; carved from train when the data has none."""
    test_split: str = "test"
    """The split the kept model is tested on; carved from train when the data has none."""
    val_fraction: float = 0.1
    """Share of train carved out as validation (stratified, seeded by seed) when there is none."""
    test_fraction: float = 0.1
    """Share of train carved out as test (stratified, seeded by seed) when there is none."""
    max_train_samples: int | None = None
    """A stratified, seeded sample of this many training rows; null = all."""
    max_eval_samples: int | None = None
    """A stratified, seeded sample of this many validation and test rows each; null = all."""
    seed: int = 42
    """Seed of carved splits and samples; apart from seed, so seed=1,2,3 varies training only."""
    num_workers: int = 0
    """DataLoader worker processes; 0 loads batches in the training process (fastest on CPU)."""

    @property
    def split_files(self) -> dict[str, str]:
        """``data.files`` by split name (data.train_split, eval_split, test_split)."""
        named = {
            self.train_split: self.files.train,
            self.eval_split: self.files.validation,
            self.test_split: self.files.test,
        }
        return {split: path for split, path in named.items() if path}

    @property
    def text_columns(self) -> list[str]:
        """The text column(s) as a list: one text, or the two texts of a pair."""
        if isinstance(self.text_column, str):
            return [self.text_column]
        return list(self.text_column)

    def __post_init__(self) -> None:
        columns = self.text_column
        _require(
            isinstance(columns, str)
            or (
                isinstance(columns, list | tuple)
                and len(columns) in (1, 2)
                and all(isinstance(c, str) for c in columns)
            ),
            "data.text_column",
            columns,
            "a column name, or a list of two for sentence pairs",
        )
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            _require(value is None or value > 0, f"data.{key}", value, "null or a positive int")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            _require(0 < value < 1, f"data.{key}", value, "a fraction in (0, 1)")
        _require(
            self.val_fraction + self.test_fraction < 1,
            "data.val_fraction + data.test_fraction",
            self.val_fraction + self.test_fraction,
            "< 1, so that some rows are left to train on",
        )
        _require(
            self.label_names is None or len(set(self.label_names)) == len(self.label_names) > 1,
            "data.label_names",
            self.label_names,
            "null or at least two distinct names",
        )
        _require(
            not self.split_files or self.files.train is not None,
            "data.files",
            self.split_files,
            "a data.files.train file beside the others",
        )
        _require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")


@dataclass
class TrainerConfig:
    epochs: int = 5
    """Maximum training epochs."""
    batch_size: int = 32
    """Training batch size per process."""
    eval_batch_size: int = 128
    """Validation and test batch size."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step (Accelerate's accumulate)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 = no clipping."""
    warmup_ratio: float = 0.1
    """Share of the steps with linear warmup."""
    scheduler: str = "linear"
    """linear, cosine or constant after the warmup."""
    mixed_precision: str = "auto"
    """auto (bf16 where the hardware runs it natively, else fp32), no, bf16 or fp16."""
    early_stopping_patience: int = 2
    """Stop after this many epochs without a better monitor value; 0 = never."""
    monitor: str = VAL_ACCURACY
    """val_accuracy, val_macro_f1 or val_loss: picks the best epoch (and the best run)."""
    log_every_n_steps: int = 20
    """Optimizer steps between train_loss points."""
    group_by_length: bool = True
    """Batches of similar-length texts (less padding; docs/benchmarks.md)."""
    length_group_factor: int = 16
    """Sort by length within mega-batches of this many batches: more = less padding, less random."""
    compile: bool = False
    """torch.compile the model (dynamic shapes)."""
    dropout_masks: str = "auto"
    """bernoulli (torch's), bits32 (the same dropout, its masks drawn from 32-bit random words:
    half the time on CPU) or auto (per CPU kind: emotion_lab/train/speed.py)."""
    embedding_grad: str = "auto"
    """One CPU process: dense (a fresh gradient each step), reused (one buffer), rows (one buffer,
    zeroed, clipped and norm-summed over the rows a step touched) or auto (per CPU kind)."""
    cpu: bool = False
    """Train on the CPU even where a GPU is present."""
    checkpointing: bool = True
    """Write checkpoints, so resume=true can continue an interrupted job."""
    checkpoint_every_n_steps: int = 200
    """Optimizer steps between checkpoints, besides one at every epoch end; 0 = epoch ends only."""

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
        _require(self.monitor in MONITORS, "trainer.monitor", self.monitor, f"one of {MONITORS}")
        for key, allowed in (
            ("dropout_masks", ("auto", "bernoulli", "bits32")),
            ("embedding_grad", ("auto", "dense", "reused", "rows")),
        ):
            value = getattr(self, key)
            _require(value in allowed, f"trainer.{key}", value, f"one of {allowed}")
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
    uri: str = "sqlite:///outputs/mlflow.db"
    """MLflow store: an sqlite file, or a tracking server (http://host:5000)."""
    experiment: str = "emotion_lab"
    """MLflow experiment name."""
    artifact_location: str | None = None
    """Where a new experiment keeps artifacts; null = beside the sqlite store, or the server's."""
    log_model: bool = True
    """Log the best epoch's model (weights and tokenizer) as the run's model/ artifact."""
    max_outage_s: float = 600.0
    """Seconds a job trains on, metrics buffered, while the server is away; then it stops."""
    system_metrics: bool = True
    """Sample CPU, memory (and GPU) use into the run's system/ metrics (System metrics tab)."""
    system_metrics_interval_s: float = 10.0
    """Seconds between two system-metrics samples (and one more at the job's end)."""

    def __post_init__(self) -> None:
        _require(self.max_outage_s > 0, "tracking.max_outage_s", self.max_outage_s, "> 0 seconds")
        _require(
            self.system_metrics_interval_s > 0,
            "tracking.system_metrics_interval_s",
            self.system_metrics_interval_s,
            "> 0 seconds",
        )


@dataclass
class PathsConfig:
    outputs: str = "outputs"
    """Folder for Hydra's run folders, checkpoints and the default store (relative to the cwd)."""


@dataclass
class TrialConfig:
    """Set by the search sweeper (hparams_search=optuna) on each job it launches."""

    storage: str | None = None
    """The Optuna storage of the search this job is a trial of; null = not a trial."""
    study: str | None = None
    """The study's name in that storage."""
    number: int | None = None
    """The trial's number in the study: the job reports its monitored score to it each epoch."""

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.storage, self.study, self.number)]
        _require(
            all(given) or not any(given),
            "trial",
            {"storage": self.storage, "study": self.study, "number": self.number},
            "all three of trial.storage, trial.study and trial.number, or none",
        )


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    init: Init = Init.pretrained
    """scratch (fresh weights from the model config) or pretrained (the checkpoint's weights)."""
    lr: float = 5e-5
    """Peak learning rate."""
    seed: int = 42
    """Seed of the weights, dropout and data order."""
    resume: bool = False
    """Continue interrupted jobs in their run (a sweep in its parent run); skip finished ones."""
    resume_changed_data: bool = False
    """With resume=true, continue a run even though its data's digest changed (edited files)."""
    debug: bool = False
    """Full tracebacks instead of one-line errors."""
    preflight: bool = True
    """Check first that every job's model, tokenizer, data and config can be had."""
    objective: str | None = None
    """Metric a job returns to an optimising sweeper: null, or best_<trainer.monitor>."""

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", self.lr, "a positive float")
        best = f"{BEST_PREFIX}{self.trainer.monitor}"
        _require(
            self.objective in (None, best),
            "objective",
            self.objective,
            f"null or {best!r} (the best epoch's trainer.monitor; to optimise another "
            "validation metric, set trainer.monitor to it)",
        )
        _require(
            not self.optimizer.lazy_embedding
            or (self.trainer.embedding_grad in ("auto", "rows") and not self.trainer.compile),
            "optimizer.lazy_embedding",
            self.optimizer.lazy_embedding,
            "false unless trainer.embedding_grad is auto or rows and trainer.compile=false "
            "(the lazy update reads the rows that buffer records)",
        )


def register_schemas() -> None:
    """Register the schema so config.yaml can extend it (``defaults: [schema, ...]``)."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
