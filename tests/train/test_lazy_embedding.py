"""optimizer.lazy_embedding: AdamW that updates only the embedding rows a step touched, a
change to the method that is never a default. The touched rows move as AdamW moves them, the
others not at all; everything else is AdamW's own update."""

from __future__ import annotations

import copy

import pytest
import torch

from emotion_lab.config import Config, OptimizerConfig, TrainerConfig
from emotion_lab.errors import ConfigError
from emotion_lab.train.embedding_grad import reuse_embedding_grad
from emotion_lab.train.lazy_adam import LazyEmbeddingAdam
from emotion_lab.train.optim import build_optimizer
from emotion_lab.train.speed import resolve_speed
from tests.conftest import SMALL_DATA, run_cli, sweep_runs
from tests.train.test_speed_equivalence import _dense_and_reused

WTE = "transformer.wte.weight"
LAZY = OptimizerConfig(lazy_embedding=True)


def _step(model, opt, tok, texts, labels) -> torch.Tensor:
    """One unclipped optimizer step on ``texts``; returns the token ids it touched."""
    batch = tok(texts, padding=True, return_tensors="pt")
    model(**batch, labels=labels).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return batch["input_ids"].unique()


def _adamw_and_lazy(lr: float = 1e-2):
    """The same tiny GPT-2 under AdamW and under the lazy update, both with the row-recording
    gradient buffer; returns the tokenizer and (model, optimizer) pairs."""
    tok, plain, _, _ = _dense_and_reused(rows_only=True)
    pairs = []
    for cfg in (OptimizerConfig(), LAZY):
        model = copy.deepcopy(plain)
        grad = reuse_embedding_grad(model, rows_only=True)
        pairs.append((model, build_optimizer(model, cfg, lr, grad)))
    return tok, tuple(pairs)


def test_one_lazy_step_is_adamw_on_the_touched_rows_and_leaves_the_rest(tweets):
    texts, labels = tweets
    tok, ((adamw, adamw_opt), (lazy, lazy_opt)) = _adamw_and_lazy()
    assert isinstance(lazy_opt, LazyEmbeddingAdam)
    assert not isinstance(adamw_opt, LazyEmbeddingAdam)
    start = copy.deepcopy(lazy.state_dict())
    touched = _step(adamw, adamw_opt, tok, texts[:16], labels[:16])
    assert torch.equal(_step(lazy, lazy_opt, tok, texts[:16], labels[:16]), touched)
    after_adamw, after_lazy = adamw.state_dict(), lazy.state_dict()
    for name, value in after_adamw.items():
        if name != WTE:
            assert torch.equal(after_lazy[name], value), name
    # The touched rows: AdamW's update, bit for bit (the same kernel on the gathered rows).
    assert torch.equal(after_lazy[WTE][touched], after_adamw[WTE][touched])
    assert not torch.equal(after_lazy[WTE][touched], start[WTE][touched])
    # Every other row: AdamW decays it (weight decay), the lazy update leaves it as it was.
    untouched = torch.ones(len(start[WTE]), dtype=torch.bool)
    untouched[touched] = False
    assert torch.equal(after_lazy[WTE][untouched], start[WTE][untouched])
    assert (after_adamw[WTE][untouched] != start[WTE][untouched]).all()


def test_a_row_left_out_of_a_step_keeps_its_weight_and_moments(tweets):
    texts, labels = tweets
    tok, (_, (lazy, opt)) = _adamw_and_lazy()
    weight = lazy.get_input_embeddings().weight
    first = _step(lazy, opt, tok, texts[:16], labels[:16])
    before = [
        t.clone() for t in (weight, *(opt.state[weight][k] for k in ("exp_avg", "exp_avg_sq")))
    ]
    second = _step(lazy, opt, tok, texts[16:32], labels[16:32])
    only_first = first[~torch.isin(first, second)]
    assert len(only_first) > 10, "the batches must differ in their tokens"
    after = (weight, opt.state[weight]["exp_avg"], opt.state[weight]["exp_avg_sq"])
    for old, new in zip(before, after, strict=True):
        assert torch.equal(new[only_first], old[only_first])
        assert not torch.equal(new[second], old[second])
    # The bias correction counts every step, as AdamW's does.
    assert opt.state[weight]["step"].item() == 2


def test_a_restored_lazy_optimizer_continues_exactly(tweets):
    texts, labels = tweets
    tok, (_, (lazy, opt)) = _adamw_and_lazy()
    _step(lazy, opt, tok, texts[:16], labels[:16])
    saved_model, saved_opt = copy.deepcopy(lazy.state_dict()), copy.deepcopy(opt.state_dict())
    _step(lazy, opt, tok, texts[16:32], labels[16:32])
    continued = lazy.state_dict()

    tok, (_, (restored, restored_opt)) = _adamw_and_lazy()
    restored.load_state_dict(saved_model)
    restored_opt.load_state_dict(saved_opt)
    _step(restored, restored_opt, tok, texts[16:32], labels[16:32])
    for name, value in continued.items():
        assert torch.equal(restored.state_dict()[name], value), name


def test_lazy_embedding_is_refused_where_no_rows_are_recorded():
    with pytest.raises(ConfigError, match="optimizer.lazy_embedding"):
        OptimizerConfig(name="sgd", lazy_embedding=True)
    for trainer in (TrainerConfig(embedding_grad="dense"), TrainerConfig(compile=True)):
        with pytest.raises(ConfigError, match="optimizer.lazy_embedding"):
            Config(optimizer=LAZY, trainer=trainer)
    # auto records the rows wherever it can: any CPU kind, one process.
    assert (
        resolve_speed(TrainerConfig(), "cpu-avx2", 1, lazy_embedding=True).embedding_grad == "rows"
    )
    for kind, processes in (("cuda", 1), ("cpu-amx", 2)):
        with pytest.raises(ConfigError, match="optimizer.lazy_embedding"):
            resolve_speed(TrainerConfig(), kind, processes, lazy_embedding=True)


def test_a_job_trains_with_the_lazy_update_and_logs_it(tmp_path):
    r = run_cli(
        ["model=tiny_gpt2", "init=scratch", "optimizer.lazy_embedding=true", *SMALL_DATA], tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    _, (run,) = sweep_runs(tmp_path)
    assert run.data.params["optimizer.lazy_embedding"] == "True"
    assert run.data.params["speed.embedding_grad"] == "rows"
    assert 0 <= run.data.metrics["test_accuracy"] <= 1
