"""The training step's speed options against each other in one process, step by step.

Each setting is the CLI's own model (from scratch, the same weights), optimizer, precision and
gradient clipping with some ``trainer.*`` speed options set. They take turns, one step each on
the same batch in a rotating order, so a machine whose speed drifts over minutes
(docs/benchmarks.md, "Long epochs") slows them all alike; a job-by-job comparison
(bench_options.py) needs many repeats to see an effect of a few percent through that drift.
Prints each setting's samples/s over the same steps, and its speed against the first: over the
whole run, and the median of the step-by-step ratios.

    HF_HUB_CACHE=$PWD/../shared/hf-hub HF_HUB_OFFLINE=1 \\
        python benchmarks/bench_step.py --data ../shared/data/emotion
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from bench_train import arguments
from profile_step import prepared, train_step

from emotion_lab.config import OptimizerConfig, TrainerConfig


@dataclass(frozen=True)
class Setting:
    """trainer.dropout_masks and trainer.embedding_grad; the rest changes the method."""

    masks: str
    grad: str
    dropout: float | None = None  # every dropout probability; None: the model's own
    lazy_embedding: bool = False  # optimizer.lazy_embedding
    bf16_weights: bool = False  # weights and optimizer state in bf16: nothing for autocast to copy


SETTINGS: dict[str, Setting] = {
    "torch's dropout masks, dense passes (bernoulli, reused)": Setting("bernoulli", "reused"),
    "32-bit-word dropout masks (bits32, reused)": Setting("bits32", "reused"),
    "touched embedding rows (bernoulli, rows)": Setting("bernoulli", "rows"),
    "both (bits32, rows)": Setting("bits32", "rows"),
    "both, and no dropout at all (changes the method)": Setting("bits32", "rows", dropout=0.0),
    "both, and lazy AdamW on the embedding (changes the method)": Setting(
        "bits32", "rows", lazy_embedding=True
    ),
    "both, and bf16 weights and optimizer state (changes the method)": Setting(
        "bits32", "rows", bf16_weights=True
    ),
    "both, lazy AdamW and bf16 weights (changes the method)": Setting(
        "bits32", "rows", lazy_embedding=True, bf16_weights=True
    ),
}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], eval_samples=32)
    parser.add_argument("--rounds", type=int, default=30, help="steps of each, after 3 warm-up")
    parser.add_argument("--only", nargs="*", help="substrings of the settings after the first")
    args = parser.parse_args()
    first = next(iter(SETTINGS))
    chosen = [n for n in SETTINGS if not args.only or n == first or any(s in n for s in args.only)]
    setups, batches = {}, None
    for name in chosen:
        setting = SETTINGS[name]
        trainer = TrainerConfig(
            cpu=True,
            batch_size=args.batch_size,
            dropout_masks=setting.masks,
            embedding_grad=setting.grad,
        )
        optim = OptimizerConfig(lazy_embedding=setting.lazy_embedding)
        accelerator, model, optimizer, loader, clip = prepared(
            args, trainer, optim, setting.bf16_weights
        )
        if setting.dropout is not None:
            # Every dropout module, attention's too (SDPA reads its p).
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = setting.dropout
        if batches is None:
            batches = list(loader)[: 3 + args.rounds]
        setups[name] = (accelerator, model, optimizer, clip)
    assert batches is not None
    times: dict[str, list[float]] = {name: [] for name in setups}
    order = list(setups)
    for i, batch in enumerate(batches):
        # Each round starts with the next setting: a step's place in the round costs the same
        # to all of them.
        for name in order[i % len(order) :] + order[: i % len(order)]:
            accelerator, model, optimizer, clip = setups[name]
            start = time.perf_counter()
            train_step(accelerator, model, optimizer, clip, batch)
            if i >= 3:
                times[name].append(time.perf_counter() - start)
    precision = setups[next(iter(setups))][0].mixed_precision
    print(
        f"\n{args.model}, batch {args.batch_size}, {precision}, {args.rounds} steps of each "
        f"(after 3 warm-up), taking turns on the same batches\n"
    )
    print(
        "| setting | samples/s | vs the first | median ms a step | median of step-by-step ratios "
        "to the first |\n|---|---|---|---|---|"
    )
    reference = next(iter(times.values()))
    for name, ts in times.items():
        rate = len(ts) * args.batch_size / sum(ts)
        ratios = [r / t for r, t in zip(reference, ts, strict=True)]
        print(
            f"| {name} | {rate:.1f} | {sum(reference) / sum(ts):.2f}x "
            f"| {1000 * statistics.median(ts):.0f} | {statistics.median(ratios):.2f}x |"
        )


if __name__ == "__main__":
    main()
