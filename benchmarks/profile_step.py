"""Where a training step's time goes: the CLI's own model, loader, optimizer and precision,
profiled by torch.profiler over a few steps after a warm-up; prints the share of the matrix
products and of everything else.

    HF_HUB_CACHE=$PWD/../shared/hf-hub HF_HUB_OFFLINE=1 \\
        python benchmarks/profile_step.py --data ../shared/data/emotion
"""

from __future__ import annotations

import argparse
import time

import torch
from accelerate import Accelerator
from bench_train import arguments
from torch.profiler import ProfilerActivity, profile

from emotion_lab.config import DataConfig, Init, ModelConfig, OptimizerConfig, TrainerConfig
from emotion_lab.data import load_splits, make_loaders, tokenize_splits
from emotion_lab.modeling import build_model, load_tokenizer
from emotion_lab.train.job import resolve_precision
from emotion_lab.train.optim import build_optimizer
from emotion_lab.train.speed import Clip, apply_speed, clip_for, hardware_kind, resolve_speed

MATMUL = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
)


def parse_with_speed(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, TrainerConfig]:
    """Parse ``parser``'s options plus the training step's speed options (as the CLI's
    trainer.* keys take them); returns the options and the trainer config they make."""
    parser.add_argument("--dropout-masks", default="auto", help="trainer.dropout_masks")
    parser.add_argument("--embedding-grad", default="auto", help="trainer.embedding_grad")
    args = parser.parse_args()
    trainer = TrainerConfig(
        cpu=True,
        batch_size=args.batch_size,
        dropout_masks=args.dropout_masks,
        embedding_grad=args.embedding_grad,
    )
    return args, trainer


def train_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    clip: Clip,
    batch: dict,
) -> None:
    """One optimizer step, as the training loop takes it (clipped at the CLI's default norm)."""
    accelerator.backward(model(**batch).loss)
    clip(model.parameters(), TrainerConfig.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def prepared(
    args: argparse.Namespace,
    trainer: TrainerConfig,
    optim: OptimizerConfig | None = None,
    bf16_weights: bool = False,
) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer, torch.utils.data.DataLoader, Clip]:
    """The CLI's own model (from scratch), speed options, optimizer, training loader, precision
    and gradient clipping, prepared by Accelerate on the CPU and in training mode.
    ``bf16_weights`` changes the method: the weights, gradients and optimizer state in bf16
    (no fp32 master weights), so autocast has no weight left to copy."""
    optim = optim or OptimizerConfig()
    model_cfg = ModelConfig(name_or_path=args.model)
    tokenizer = load_tokenizer(model_cfg.tokenizer_name)
    data = DataConfig(path=args.data, max_train_samples=args.samples, max_eval_samples=32)
    splits = tokenize_splits(load_splits(data), tokenizer, model_cfg.max_length)
    torch.manual_seed(0)
    model = build_model(model_cfg, Init.scratch, splits.label_names, tokenizer)
    if bf16_weights:
        model.to(torch.bfloat16)
    speed = resolve_speed(trainer, hardware_kind("cpu"), 1, optim.lazy_embedding)
    print(f"speed options: {speed.params()}")
    grad = apply_speed(model, speed)
    optimizer = build_optimizer(model, optim, 5e-5, grad)
    loader, *_ = make_loaders(splits, tokenizer, trainer, data, 0)
    accelerator = Accelerator(mixed_precision=resolve_precision(trainer), cpu=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    return accelerator, model, optimizer, loader, clip_for(accelerator, grad)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], eval_samples=32)
    parser.add_argument("--steps", type=int, default=8, help="profiled steps, after 3 warm-up")
    args, trainer = parse_with_speed(parser)
    accelerator, model, optimizer, loader, clip = prepared(args, trainer)
    precision = accelerator.mixed_precision
    batches = list(loader)[: 3 + args.steps]

    def step(batch: dict) -> None:
        train_step(accelerator, model, optimizer, clip, batch)

    for batch in batches[:3]:
        step(batch)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[3:]:
            step(batch)
    seconds = time.perf_counter() - start
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    matmul = sum(e.self_cpu_time_total for e in rows if e.key in MATMUL)
    n = len(batches) - 3
    print(
        f"{args.model}, batch {args.batch_size}, precision {precision}: {n} steps, "
        f"{1000 * seconds / n:.0f} ms a step (profiled)\n"
    )
    print("| op | ms a step | share |\n|---|---|---|")
    for e in rows[:12]:
        ms, share = e.self_cpu_time_total / 1000 / n, e.self_cpu_time_total / total
        print(f"| {e.key} | {ms:.1f} | {share:.1%} |")
    print(f"\nMatrix products ({', '.join(MATMUL)}): {matmul / total:.0%} of the step")


if __name__ == "__main__":
    main()
