"""Optimizer and learning-rate schedule from the optimizer/trainer config groups."""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_scheduler

from emotion_lab.config import OptimizerConfig
from emotion_lab.errors import ConfigError
from emotion_lab.train.embedding_grad import EmbeddingGrad
from emotion_lab.train.lazy_adam import LazyEmbeddingAdam


def build_optimizer(
    model: nn.Module, cfg: OptimizerConfig, lr: float, embedding: EmbeddingGrad | None = None
) -> torch.optim.Optimizer:
    """No weight decay on biases and norm weights (1-d tensors), as is standard for transformers.

    The fused implementation does the whole update in one kernel per parameter group; on CPU
    it removes most of the optimizer's share of a step. ``optimizer.lazy_embedding`` updates
    only the embedding rows that ``embedding`` (the reused gradient with ``rows``) recorded.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    impl = {
        "fused": {"fused": True},
        "foreach": {"foreach": True},
        "for_loop": {"foreach": False},
    }[cfg.implementation]
    if cfg.lazy_embedding:
        if embedding is None or not embedding.rows_only:
            raise ConfigError(
                "optimizer.lazy_embedding=true needs a model whose input layer is a plain "
                "nn.Embedding, trained with trainer.embedding_grad=rows."
            )
        decoupled = cfg.name == "adamw"
        return LazyEmbeddingAdam(
            groups,
            embedding,
            lr=lr,
            betas=tuple(cfg.betas),
            eps=cfg.eps,
            decoupled_weight_decay=decoupled,
            **impl,
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, **impl)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, **impl)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **impl)


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup, then linear/cosine decay to zero (or constant)."""
    schedule = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(
        schedule,
        optimizer,
        num_warmup_steps=round(warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
