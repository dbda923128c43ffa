"""Each speed option of emotion_lab's training path measured on its own: the defaults, then
one option flipped at a time. Every variant is a real CLI job in its own process, trained for
two epochs: epoch 1 includes warm-up (and compilation), epoch 2 is the steady state. With
``--repeats N`` the variants run round-robin N times and each cell is the median (the range in
brackets): on a machine whose speed drifts over minutes, one run of each cannot tell apart
effects of a few percent.

    HF_HUB_CACHE=$PWD/../shared/hf-hub HF_HUB_OFFLINE=1 \\
        python benchmarks/bench_options.py --data ../shared/data/emotion [--repeats 3]
"""

from __future__ import annotations

import os
import statistics
import sys

from bench_train import arguments, cell, cli_job

# Each variant flips one option from the defaults (CLI overrides).
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "fp32": ["trainer.mixed_precision=no"],
    "eager attention": ["model.attn_implementation=eager"],
    "five-op GELU": ["model.fused_gelu=false"],
    "no length grouping": ["trainer.group_by_length=false"],
    "mega-batches of 50 batches": ["trainer.length_group_factor=50"],
    "foreach optimizer": ["optimizer.implementation=foreach"],
    "for-loop optimizer": ["optimizer.implementation=for_loop"],
    "neither AMX option (torch's dropout masks, dense passes)": [
        "trainer.dropout_masks=bernoulli",
        "trainer.embedding_grad=reused",
    ],
    "dropout masks from torch's bernoulli_": ["trainer.dropout_masks=bernoulli"],
    "dropout masks from 32-bit words": ["trainer.dropout_masks=bits32"],
    "dense embedding gradient": ["trainer.embedding_grad=dense"],
    "reused embedding gradient, dense passes": ["trainer.embedding_grad=reused"],
    "reused embedding gradient, touched rows": ["trainer.embedding_grad=rows"],
    "2 DataLoader workers": ["data.num_workers=2"],
    "torch.compile": ["trainer.compile=true"],
}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], eval_samples=500)
    parser.add_argument("--only", nargs="*", help="substrings of the variants to run")
    parser.add_argument("--repeats", type=int, default=1, help="round-robin runs of each")
    args = parser.parse_args()
    base = [
        f"model.name_or_path={args.model}",
        "init=scratch",
        f"data.max_train_samples={args.samples}",
        f"data.max_eval_samples={args.eval_samples}",
        "trainer.epochs=2",
        "trainer.early_stopping_patience=0",
        f"trainer.batch_size={args.batch_size}",
        "tracking.log_model=false",
        f"trainer.cpu={not args.gpu}",
    ]
    names = [
        name
        for name in VARIANTS
        if not args.only or name == "defaults" or any(s in name for s in args.only)
    ]
    runs: dict[str, list[tuple[float, ...]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            (history,) = cli_job(args.data, base + VARIANTS[name])[0]["jobs"]
            train, evals = history["train_samples_per_s"], history["val_samples_per_s"]
            loss, peak = history["epoch_train_loss"][1], history["peak_memory_mb"]
            runs[name].append((train[0], train[1], evals[1], loss, peak))
            print(f"{repeat + 1}/{args.repeats} {name}: {runs[name][-1]}", file=sys.stderr)
    where = "GPU" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    print(
        f"\n{args.model}, {args.samples} training texts x 2 epochs, {args.eval_samples} eval "
        f"texts, batch {args.batch_size}, {where}; medians of {args.repeats} round-robin runs\n"
    )
    print(
        "| variant | train samples/s, epoch 1 | train samples/s, epoch 2 | vs defaults "
        "| eval samples/s | epoch-2 train loss | peak memory MB |"
    )
    print("|---|---|---|---|---|---|---|")
    ref = statistics.median(r[1] for r in runs["defaults"])
    for name, rows in runs.items():
        t1, t2, ev, loss, peak = ([r[k] for r in rows] for k in range(5))
        flipped = " ".join(VARIANTS[name]) or "-"
        print(
            f"| {name} (`{flipped}`) | {cell(t1, '.1f')} | {cell(t2, '.1f')} "
            f"| {statistics.median(t2) / ref:.2f}x | {cell(ev, '.1f')} "
            f"| {cell(loss, '.4f')} | {cell(peak, '.0f')} |"
        )


if __name__ == "__main__":
    main()
