"""What ``auto`` means for the training step's exact speed options, per kind of hardware.

Each option computes the same method (docs/benchmarks.md, "Speed options"): it only changes
how fast a step runs, and that depends on the CPU. A CPU with AMX runs matrix products five
times faster than Zen 4, so there the rest of a step (dropout masks, dense passes over the
embedding gradient) is what an option can win back. ``auto`` turns an option on only on the
kinds where it was measured faster; every other kind keeps the behaviour it was measured
with. The job logs the kind and what ``auto`` chose (params ``speed.*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import cache, partial
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from emotion_lab.config import TrainerConfig
from emotion_lab.errors import ConfigError
from emotion_lab.train.dropout import use_bits_dropout
from emotion_lab.train.embedding_grad import EmbeddingGrad, reuse_embedding_grad

# Clips the gradients to a norm, as the training loop does.
Clip = Callable[[Iterable[torch.Tensor], float], torch.Tensor]

AUTO = "auto"

# What ``auto`` picks on each hardware kind, where it differs from the fallback below
# (measured: docs/benchmarks.md, "Speed options on a CPU with AMX").
AUTO_CHOICES: dict[str, dict[str, str]] = {
    "cpu-amx": {"dropout_masks": "bits32", "embedding_grad": "rows"},
}
# Every kind not measured otherwise: the behaviour its benchmark rows were taken with.
FALLBACK = {"dropout_masks": "bernoulli", "embedding_grad": "reused"}


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, from /proc/cpuinfo (empty where there is none)."""
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.exists() else ""
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "flags:")
    return frozenset(line.split(":", 1)[1].split())


def hardware_kind(device_type: str) -> str:
    """``cuda``, or the CPU kind that decides bf16 speed: ``cpu-amx`` (Sapphire Rapids and
    later Xeons), ``cpu-avx512_bf16`` (Zen 4, Cooper Lake), ``cpu-avx2`` or ``cpu``."""
    if device_type != "cpu":
        return device_type
    flags = cpu_flags()
    for flag, kind in (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"), ("avx2", "avx2")):
        if flag in flags:
            return f"cpu-{kind}"
    return "cpu"


@dataclass(frozen=True)
class SpeedChoices:
    """The options a job trains with, ``auto`` resolved."""

    kind: str
    dropout_masks: str  # bernoulli (torch's) or bits32 (emotion_lab.train.dropout)
    embedding_grad: str  # dense, reused or rows (emotion_lab.train.embedding_grad)

    def params(self) -> dict[str, str]:
        return {f"speed.{k}": v for k, v in asdict(self).items()}


def resolve_speed(
    cfg: TrainerConfig, kind: str, num_processes: int, lazy_embedding: bool = False
) -> SpeedChoices:
    """``auto`` from the table above for this ``hardware_kind``; then what the device allows.
    The embedding-gradient buffer is for one CPU process without torch.compile (see
    embedding_grad.py), and the dropout masks for the eager CPU step: elsewhere both are
    torch's own. ``optimizer.lazy_embedding`` needs the rows the buffer records."""
    picked = FALLBACK | AUTO_CHOICES.get(kind, {})
    if lazy_embedding:
        picked = picked | {"embedding_grad": "rows"}
    dropout = picked["dropout_masks"] if cfg.dropout_masks == AUTO else cfg.dropout_masks
    grad = picked["embedding_grad"] if cfg.embedding_grad == AUTO else cfg.embedding_grad
    on_cpu = kind.startswith("cpu")
    if not on_cpu or cfg.compile:
        dropout = "bernoulli"
    if not on_cpu or num_processes > 1 or cfg.compile:
        grad = "dense"
    if lazy_embedding and grad != "rows":
        raise ConfigError(
            "optimizer.lazy_embedding=true updates the embedding rows a step touched, which "
            "only trainer.embedding_grad=rows records (one CPU process, trainer.compile=false): "
            "set those, or optimizer.lazy_embedding=false."
        )
    return SpeedChoices(kind, dropout, grad)


def apply_speed(model: nn.Module, choices: SpeedChoices) -> EmbeddingGrad | None:
    """Switch ``model`` (before Accelerate prepares it) to the chosen options; returns its
    reused embedding gradient, if any."""
    if choices.dropout_masks == "bits32":
        use_bits_dropout(model)
    if choices.embedding_grad == "dense":
        return None
    return reuse_embedding_grad(model, rows_only=choices.embedding_grad == "rows")


def clip_for(accelerator: Accelerator, grad: EmbeddingGrad | None) -> Clip:
    """The loop's gradient clipping: row-aware with ``rows``, else Accelerate's own."""
    if grad is not None and grad.rows_only:
        return partial(grad.clip_grad_norm_, accelerator)
    return accelerator.clip_grad_norm_
