"""Keep the input-embedding gradient in one reused buffer.

A batch of tweets touches a few hundred of GPT-2's 50257 embedding rows, yet the dense
backward allocates and zero-fills a fresh dense gradient (vocabulary x width) every step. On
CPU that allocation is page faults, not arithmetic: a sizeable part of a distilgpt2 step (see
docs/benchmarks.md). A sparse backward scattered into one persistent dense buffer
hands the optimizer the same dense gradient without it. CUDA's caching allocator already
reuses memory, and DDP expects the gradient layout it was built with, so this is for one
CPU process.
"""

from __future__ import annotations

import torch
from torch import nn


def reuse_embedding_grad(model: nn.Module) -> bool:
    """Switch the input embedding to a sparse backward densified into a reused buffer, released
    during evaluation; returns whether the model has a plain ``nn.Embedding`` input layer to
    switch."""
    try:
        embedding = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return False
    if not isinstance(embedding, nn.Embedding) or embedding.sparse:
        return False
    embedding.sparse = True
    buffer: list[torch.Tensor] = []

    def densify(weight: torch.Tensor) -> None:
        grad = weight.grad
        # Dense already: a later micro-batch of an accumulated step added into the buffer.
        if grad is None or not grad.is_sparse:
            return
        if buffer:
            buffer[0].zero_()
        else:
            buffer.append(torch.zeros_like(weight))
        rows = grad._indices()[0]
        weight.grad = buffer[0].index_add_(0, rows, grad._values().to(weight.dtype))

    def release(module: nn.Module, args: tuple) -> None:
        # Evaluation (no autograd) needs no gradient: the buffer is not held through it, where
        # it would add to the job's peak memory; the next training step allocates it again.
        if not torch.is_grad_enabled():
            buffer.clear()

    embedding.weight.register_post_accumulate_grad_hook(densify)
    embedding.register_forward_pre_hook(release)
    return True
