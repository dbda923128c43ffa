"""Head gates and the position the classifier reads.

transformers 5 has no ``head_mask``. A head's output is its slice of the input to the attention
output projection (GPT-2's ``attn.c_proj``, BERT's ``attention.output.dense``): the heads'
outputs are concatenated head by head before that projection. A forward pre-hook multiplies each
slice by a gate ξ; ξ = 1 changes nothing, ξ = 0 removes the head, and ∂L/∂ξ is Michel et al.'s
(2019) head importance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

from emotion_lab.errors import ModelError


def blocks(model: PreTrainedModel) -> list[nn.Module]:
    """The transformer layers, first layer first."""
    base = getattr(model, model.base_model_prefix, model)
    if hasattr(base, "h"):  # GPT-2 family
        return list(base.h)
    encoder = getattr(base, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):  # BERT family (MiniLM)
        return list(encoder.layer)
    raise ModelError(f"{type(model).__name__}: not a GPT-2 or BERT-style model, no heads to gate.")


def output_projections(model: PreTrainedModel) -> list[nn.Module]:
    """Each layer's attention output projection, first layer first."""
    if pools_last_token(model):
        return [block.attn.c_proj for block in blocks(model)]
    return [layer.attention.output.dense for layer in blocks(model)]


@contextmanager
def gated(model: PreTrainedModel, gates: torch.Tensor) -> Iterator[None]:
    """Run ``model`` with head ``h`` of layer ``l`` scaled by ``gates[..., l, h]``.

    ``gates`` is [layers, heads] (the same for every text) or [batch, layers, heads] (one gate
    per text, so that one backward pass gives every text's own ∂L/∂ξ)."""
    projections = output_projections(model)
    layers, heads = gates.shape[-2:]
    if layers != len(projections):
        raise ModelError(f"gates for {layers} layers, but the model has {len(projections)}.")

    def hook(layer: int):
        def scale(_module: nn.Module, args: tuple) -> tuple:
            x = args[0]
            width = x.shape[-1] // heads
            g = gates[..., layer, :].to(x.dtype).repeat_interleave(width, dim=-1)
            g = g if g.dim() == 1 else g[:, None, :]
            return (x * g, *args[1:])

        return scale

    handles = [p.register_forward_pre_hook(hook(i)) for i, p in enumerate(projections)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def recorded(model: PreTrainedModel) -> Iterator[list]:
    """Collects each layer's output of the next forward pass, first layer first."""
    outputs: list = []
    handles = [
        b.register_forward_hook(lambda _m, _a, out: outputs.append(out)) for b in blocks(model)
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def replayed(model: PreTrainedModel, outputs: list, upto: int) -> Iterator[None]:
    """The layers below ``upto`` return their ``recorded`` outputs without computing: a head
    gated in layer l changes nothing below it, so ablations in deep layers skip the shallow
    ones (same inputs, same batch, same numbers)."""
    layers = blocks(model)[:upto]
    for layer, out in zip(layers, outputs, strict=False):
        layer.forward = lambda *_args, _out=out, **_kwargs: _out
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def pools_last_token(model: PreTrainedModel) -> bool:
    """GPT-2's classifier reads the last non-pad token; BERT-style ones read the first."""
    return hasattr(getattr(model, model.base_model_prefix, model), "h")


def pooled_positions(model: PreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
    """[batch] index of the token the classifier reads: for GPT-2 the rightmost token whose id
    is not the pad id (the rule ``GPT2ForSequenceClassification`` applies), else 0 ([CLS])."""
    if not pools_last_token(model):
        return torch.zeros(ids.shape[0], dtype=torch.long)
    pad = model.config.pad_token_id
    positions = torch.arange(ids.shape[1])
    return (positions * (ids != pad)).argmax(-1)
