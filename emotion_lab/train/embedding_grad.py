"""Keep the input-embedding gradient in one reused buffer, and pass over only its live rows.

A batch of tweets touches a few hundred of GPT-2's 50257 embedding rows, yet the dense
backward allocates and zero-fills a fresh dense gradient (vocabulary x width) every step. On
CPU that allocation is page faults, not arithmetic: a sizeable part of a distilgpt2 step (see
docs/benchmarks.md). A sparse backward scattered into one persistent dense buffer hands the
optimizer the same dense gradient without it (``reused``).

``rows`` goes further. The buffer is nonzero only in the rows the step's batches touched, so
resetting it, its share of the gradient norm and its clipping need only those rows: three
dense passes over 38.6M floats fewer per step, with the same result (a zero row adds nothing
to a norm and stays zero when scaled). The optimizer still updates every row, as AdamW does.

CUDA's caching allocator already reuses memory, and DDP expects the gradient layout it was
built with, so this is for one CPU process.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from accelerate import Accelerator
from torch import nn


class EmbeddingGrad:
    """The input embedding's reused gradient buffer, and which of its rows may be nonzero."""

    def __init__(self, embedding: nn.Embedding, rows_only: bool) -> None:
        self.weight = embedding.weight
        self.rows_only = rows_only
        self._buffer: list[torch.Tensor] = []
        # Token ids whose rows the buffer may hold nonzero: those of every batch run with
        # autograd since the buffer was last reset (a batch's backward writes its rows).
        self._touched: list[torch.Tensor] = []
        embedding.sparse = True
        self.weight.register_post_accumulate_grad_hook(self._densify)
        embedding.register_forward_pre_hook(self._see_batch)

    def _see_batch(self, module: nn.Module, args: tuple) -> None:
        if torch.is_grad_enabled():
            self._touched.append(args[0].detach().flatten())
        else:
            # Evaluation (no autograd) needs no gradient: the buffer is not held through it,
            # where it would add to the job's peak memory; the next training step allocates
            # it again.
            self._buffer.clear()
            self._touched.clear()

    def _densify(self, weight: torch.Tensor) -> None:
        grad = weight.grad
        # Dense already: a later micro-batch of an accumulated step added into the buffer.
        if grad is None or not grad.is_sparse:
            return
        rows = grad._indices()[0]
        if not self._buffer:
            self._buffer.append(torch.zeros_like(weight))
        elif self.rows_only:
            self._buffer[0].index_fill_(0, torch.cat(self._touched), 0)
        else:
            self._buffer[0].zero_()
        # Rows written from here on: this batch's, and those of later micro-batches.
        self._touched = [rows]
        weight.grad = self._buffer[0].index_add_(0, rows, grad._values().to(weight.dtype))

    def rows(self) -> torch.Tensor:
        """The rows the gradient may hold nonzero: the tokens of the step's batches, sorted."""
        return torch.cat(self._touched).unique()

    def clip_grad_norm_(
        self, accelerator: Accelerator, parameters: Iterable[torch.Tensor], max_norm: float
    ) -> torch.Tensor:
        """``accelerator.clip_grad_norm_`` (the 2-norm over all gradients, each scaled by
        ``min(1, max_norm / (norm + 1e-6))``), reading and scaling only the embedding's touched
        rows (every row but those stays zero, with ``rows`` or ``reused``)."""
        params = list(parameters)
        whole = self.weight.grad
        if whole is None:
            return accelerator.clip_grad_norm_(params, max_norm)
        accelerator.unscale_gradients()
        rows = self.rows()
        live = whole.index_select(0, rows)
        grads = [live if p is self.weight else p.grad for p in params if p.grad is not None]
        total = torch.nn.utils.get_total_norm(grads)
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_(grads, scale)
        whole.index_copy_(0, rows, live)
        return total


def reuse_embedding_grad(model: nn.Module, rows_only: bool = False) -> EmbeddingGrad | None:
    """Switch the input embedding to a sparse backward densified into a reused buffer, released
    during evaluation; None when the model has no plain ``nn.Embedding`` input layer."""
    try:
        embedding = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if not isinstance(embedding, nn.Embedding) or embedding.sparse:
        return None
    return EmbeddingGrad(embedding, rows_only)
