"""What ``auto`` picks per hardware kind, and the 32-bit-word dropout masks: their keep
probability, independence and scaling against torch's own dropout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from emotion_lab.config import Init, TrainerConfig
from emotion_lab.modeling import build_model, load_tokenizer
from emotion_lab.train.dropout import BitsDropout, keep_mask, use_bits_dropout
from emotion_lab.train.speed import AUTO_CHOICES, FALLBACK, cpu_flags, hardware_kind, resolve_speed
from tests.train.test_speed_equivalence import LABELS, MINILM, TINY


def test_the_hardware_kind_follows_the_cpu_flags():
    flags, kind = cpu_flags(), hardware_kind("cpu")
    if "amx_bf16" in flags:
        assert kind == "cpu-amx"
    elif "avx512_bf16" in flags:
        assert kind == "cpu-avx512_bf16"
    else:
        assert kind in ("cpu-avx2", "cpu")
    assert hardware_kind("cuda") == "cuda"


def test_auto_picks_the_measured_options_on_amx_only():
    auto = TrainerConfig()
    amx = resolve_speed(auto, "cpu-amx", num_processes=1)
    assert (amx.dropout_masks, amx.embedding_grad) == ("bits32", "rows")
    for kind in ("cpu-avx512_bf16", "cpu-avx2", "cpu"):
        other = resolve_speed(auto, kind, num_processes=1)
        assert (other.dropout_masks, other.embedding_grad) == ("bernoulli", "reused")
    assert set(AUTO_CHOICES["cpu-amx"]) == set(FALLBACK)
    assert resolve_speed(auto, "cpu-amx", 1).params() == {
        "speed.kind": "cpu-amx",
        "speed.dropout_masks": "bits32",
        "speed.embedding_grad": "rows",
    }


def test_explicit_choices_win_and_the_device_has_the_last_word():
    chosen = TrainerConfig(dropout_masks="bits32", embedding_grad="rows")
    assert resolve_speed(chosen, "cpu-avx2", 1).embedding_grad == "rows"
    assert resolve_speed(chosen, "cpu-avx2", 1).dropout_masks == "bits32"
    plain = TrainerConfig(dropout_masks="bernoulli", embedding_grad="reused")
    assert resolve_speed(plain, "cpu-amx", 1).dropout_masks == "bernoulli"
    assert resolve_speed(plain, "cpu-amx", 1).embedding_grad == "reused"
    # A GPU, several processes (DDP) or torch.compile: torch's own dropout and gradient.
    gpu = resolve_speed(chosen, "cuda", 1)
    assert (gpu.dropout_masks, gpu.embedding_grad) == ("bernoulli", "dense")
    assert resolve_speed(chosen, "cpu-amx", 2).embedding_grad == "dense"
    compiled = resolve_speed(TrainerConfig(compile=True), "cpu-amx", 1)
    assert (compiled.dropout_masks, compiled.embedding_grad) == ("bernoulli", "dense")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_masks_keep_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    n = 2**22
    kept = keep_mask(torch.Size([n]), p, torch.device("cpu"))
    assert kept.dtype == torch.bool
    # Binomial(n, 1 - p): 5 standard deviations either side.
    sd = math.sqrt(n * p * (1 - p))
    assert abs(int(kept.sum()) - n * (1 - p)) < 5 * sd
    # Independent elements: neighbours (the two halves of one 64-bit draw, and consecutive
    # draws) are kept together as often as chance says.
    pairs = (kept[:-1] & kept[1:]).float().mean().item()
    assert pairs == pytest.approx((1 - p) ** 2, abs=5 * math.sqrt((1 - p) ** 2 / n) + 1e-3)
    # Independent steps: the next mask is a new one.
    again = keep_mask(torch.Size([n]), p, torch.device("cpu"))
    assert (kept & again).float().mean().item() == pytest.approx((1 - p) ** 2, abs=2e-3)


def test_masks_follow_the_torch_seed():
    torch.manual_seed(3)
    first = keep_mask(torch.Size([4, 1000]), 0.1, torch.device("cpu"))
    torch.manual_seed(3)
    assert torch.equal(keep_mask(torch.Size([4, 1000]), 0.1, torch.device("cpu")), first)
    # An odd count uses half of the last 64-bit draw.
    assert keep_mask(torch.Size([3, 7]), 0.1, torch.device("cpu")).shape == (3, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_values_and_their_gradient_are_scaled_as_torch_dropout_scales_them(dtype):
    torch.manual_seed(0)
    x = torch.randn(64, 40, 96).to(dtype).requires_grad_()
    upstream = torch.randn(x.shape).to(dtype)
    out = {}
    for name, dropout in (("bits", BitsDropout(0.1)), ("torch", nn.Dropout(0.1))):
        x.grad = None
        y = dropout.train()(x)
        y.backward(upstream)
        out[name] = (y.detach(), x.grad.clone())
    (bits_y, bits_g), (torch_y, torch_g) = out["bits"], out["torch"]
    bits_kept, torch_kept = bits_y != 0, torch_y != 0
    assert bits_kept.float().mean().item() == pytest.approx(0.9, abs=0.01)
    assert not torch.equal(bits_kept, torch_kept), "the masks are drawn independently"
    both = bits_kept & torch_kept
    # Where both kept an element, value and gradient agree to the bit: the same noise tensor
    # (1 / 0.9 in the input's dtype) multiplies them.
    assert torch.equal(bits_y[both], torch_y[both])
    assert torch.equal(bits_g[both], torch_g[both])
    assert torch.equal(bits_g[~bits_kept], torch.zeros_like(bits_g[~bits_kept]))


def test_bits_dropout_is_the_identity_in_evaluation_and_at_p_zero():
    x = torch.randn(8, 16)
    assert torch.equal(BitsDropout(0.1).eval()(x), x)
    assert torch.equal(BitsDropout(0.0).train()(x), x)
    assert torch.equal(BitsDropout(1.0).train()(x), torch.zeros_like(x))


def test_every_gpt2_dropout_module_switches_and_evaluation_is_unchanged():
    tok = load_tokenizer(TINY.tokenizer_name)
    torch.manual_seed(0)
    model = build_model(TINY, Init.scratch, LABELS, tok)
    plain = build_model(TINY, Init.scratch, LABELS, tok)
    plain.load_state_dict(model.state_dict())
    # One embedding dropout; attention, attention-output and MLP dropouts in each of 2 layers.
    assert use_bits_dropout(model) == 1 + 3 * 2
    assert not [m for m in model.modules() if type(m) is nn.Dropout]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [
        m.p for m in plain.modules() if isinstance(m, nn.Dropout)
    ]
    batch = tok(["i feel great", "so sad today, really"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model.eval()(**batch).logits, plain.eval()(**batch).logits)
        model.train()
        a, b = model(**batch).logits, model(**batch).logits
    assert not torch.equal(a, b), "training-mode dropout must draw new masks"


def test_a_bert_model_switches_too():
    tok = load_tokenizer(MINILM.tokenizer_name)
    model = build_model(MINILM, Init.scratch, LABELS, tok)
    before = [m for m in model.modules() if type(m) is nn.Dropout]
    assert use_bits_dropout(model) == len(before) > 0
    assert all(type(m) is BitsDropout for m in before)
