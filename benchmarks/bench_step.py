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

import torch
from bench_train import arguments
from profile_step import prepared, train_step

from emotion_lab.config import TrainerConfig

# name: (trainer.dropout_masks, trainer.embedding_grad, dropout probability or None for the
# model's own). The last one changes the method: it shows what dropout costs at all.
SETTINGS: dict[str, tuple[str, str, float | None]] = {
    "torch's dropout masks, dense passes (bernoulli, reused)": ("bernoulli", "reused", None),
    "32-bit-word dropout masks (bits32, reused)": ("bits32", "reused", None),
    "touched embedding rows (bernoulli, rows)": ("bernoulli", "rows", None),
    "both (bits32, rows)": ("bits32", "rows", None),
    "both, and no dropout at all (changes the method)": ("bits32", "rows", 0.0),
}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], eval_samples=32)
    parser.add_argument("--rounds", type=int, default=30, help="steps of each, after 3 warm-up")
    args = parser.parse_args()
    setups, batches = {}, None
    for name, (masks, grad, p) in SETTINGS.items():
        trainer = TrainerConfig(
            cpu=True, batch_size=args.batch_size, dropout_masks=masks, embedding_grad=grad
        )
        accelerator, model, optimizer, loader, clip = prepared(args, trainer)
        if p is not None:
            # Every dropout module, attention's too (SDPA reads its p).
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = p
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
