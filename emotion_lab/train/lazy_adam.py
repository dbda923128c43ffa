"""Adam/AdamW with a lazy update of the input embedding: only the rows a step's batches touched.

This changes the method, so it is never a default (``optimizer.lazy_embedding``; measured in
docs/benchmarks.md, "Changes to the method that would reach the goals"). AdamW moves every
row on every step: a row whose gradient is zero still has its moments decay, still steps along
its momentum, and its weight still decays. The lazy update (TensorFlow Addons' LazyAdam,
torch's SparseAdam) leaves a row untouched until a batch uses its token again. The touched
rows are updated as AdamW updates them: the same kernel, and the same step count for the bias
correction. Given the same gradients, a row touched on every step takes exactly AdamW's steps.

It pays where the embedding is most of the model: distilgpt2's 38.6M embedding parameters are
almost half of its 81M, so the optimizer's dense pass over memory shrinks by about half. Which
rows a step touched comes from the reused gradient buffer (``trainer.embedding_grad=rows``),
which records them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adam import adam

from emotion_lab.train.embedding_grad import EmbeddingGrad


class LazyEmbeddingAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (``decoupled_weight_decay=True``: AdamW) for every parameter but
    the input embedding, whose update covers only the rows ``embedding`` recorded."""

    def __init__(self, params: Iterable[Any], embedding: EmbeddingGrad, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.embedding = embedding

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("LazyEmbeddingAdam takes no closure")
        weight = self.embedding.weight
        grad = weight.grad
        weight.grad = None  # Adam skips a parameter without a gradient
        try:
            super().step()
        finally:
            weight.grad = grad
        if grad is not None:
            self._update_rows(weight, grad)

    def _update_rows(self, weight: torch.Tensor, grad: torch.Tensor) -> None:
        group = next(g for g in self.param_groups if any(p is weight for p in g["params"]))
        if group["amsgrad"]:
            raise ValueError("LazyEmbeddingAdam does not implement amsgrad")
        state = self.state[weight]
        if not state:  # as Adam initialises it, so that a checkpoint reads the same
            on_device = group["fused"] or group["capturable"]
            state["step"] = torch.zeros(
                (), dtype=torch.float32, device=weight.device if on_device else "cpu"
            )
            state["exp_avg"] = torch.zeros_like(weight, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(weight, memory_format=torch.preserve_format)
        rows = self.embedding.rows()
        # Gathered copies, updated in place by Adam's own kernel, then written back.
        live = [weight[rows], state["exp_avg"][rows], state["exp_avg_sq"][rows]]
        beta1, beta2 = group["betas"]
        adam(
            [live[0]],
            [grad[rows]],
            [live[1]],
            [live[2]],
            [],
            [state["step"]],
            foreach=group["foreach"],
            fused=group["fused"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )
        for whole, part in zip((weight, state["exp_avg"], state["exp_avg_sq"]), live, strict=True):
            whole.index_copy_(0, rows, part)
