"""Where a long stretch of training loses speed: the CLI's own model, loader, optimizer and
precision over many steps of a full-size epoch, timed phase by phase per window of steps, beside
a fixed-work probe that tells the machine's own drift from the job's.

    HF_HUB_CACHE=$PWD/../shared/hf-hub HF_HUB_OFFLINE=1 \\
        python benchmarks/profile_epoch.py --data ../shared/data/emotion --samples 16000 --steps 300

A 20-step epoch and a 500-step one train the same batches' kinds, so a speed that falls with the
step index, at the same batch lengths, is either the job (memory growth, page faults, optimizer
state) or the machine (a shared or throttled CPU). The probe (ten bf16 matrix products of a
fixed shape, and one fused AdamW step over 20M parameters, after every window) separates them:
where the step's phases slow down as the probe does, the machine drifted, not the job.
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import torch
from bench_train import arguments
from profile_step import parse_with_speed, prepared


class Probe:
    """Fixed work, so its time is the machine's: ten bf16 products of a distilgpt2 MLP shape
    (compute-bound) and one fused AdamW step over 20M parameters (memory-bound, as the
    optimizer and the gradient norm are)."""

    def __init__(self) -> None:
        self.a = torch.randn(2048, 768, dtype=torch.bfloat16)
        self.w = torch.randn(768, 3072, dtype=torch.bfloat16)
        self.param = torch.zeros(20_000_000, requires_grad=True)
        self.param.grad = torch.full_like(self.param, 1e-3)
        self.adamw = torch.optim.AdamW([self.param], lr=1e-4, fused=True)
        self.adamw.step()  # its state is allocated at the first step, not timed

    def ms(self) -> tuple[float, float]:
        start = time.perf_counter()
        for _ in range(10):
            self.a @ self.w
        middle = time.perf_counter()
        self.adamw.step()
        return 1000 * (middle - start), 1000 * (time.perf_counter() - middle)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], eval_samples=32)
    parser.add_argument("--steps", type=int, default=300, help="steps timed, from the first")
    parser.add_argument("--window", type=int, default=50, help="steps a row of the table")
    args, trainer = parse_with_speed(parser)
    accelerator, model, optimizer, loader, clip = prepared(args, trainer)
    precision = accelerator.mixed_precision
    probe = Probe()
    matmul_ms, adamw_ms = probe.ms()
    print(
        f"{args.model}, {args.samples} training texts, batch {args.batch_size}, {precision}; "
        f"probe before: matmuls {matmul_ms:.0f} ms, AdamW {adamw_ms:.0f} ms\n"
    )
    print(
        "| steps | samples/s | fwd+bwd ms | clip ms | optimizer ms | padded length | pad waste "
        "| page faults a step | RSS MB | probe: matmuls ms | probe: AdamW ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    window: list[tuple[float, float, float, int, int, int]] = []
    for i, batch in enumerate(loader):
        if i >= args.steps:
            break
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        accelerator.backward(model(**batch).loss)
        backward = time.perf_counter()
        clip(model.parameters(), trainer.max_grad_norm)
        clipped = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        real, padded = int(batch["attention_mask"].sum()), batch["input_ids"].numel()
        window.append((backward - start, clipped - backward, done - clipped, real, padded, faults))
        if len(window) == args.window:
            _row(i + 1 - len(window), i + 1, window, args.batch_size, probe)
            window = []


def _row(first: int, last: int, window: list, batch_size: int, probe: Probe) -> None:
    fwd, clip, opt = (sum(w[k] for w in window) for k in range(3))
    seconds = fwd + clip + opt
    real, padded = sum(w[3] for w in window), sum(w[4] for w in window)
    status = Path("/proc/self/status").read_text()
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    matmul_ms, adamw_ms = probe.ms()
    n = len(window)
    print(
        f"| {first}-{last} | {n * batch_size / seconds:.1f} | {1000 * fwd / n:.0f} | "
        f"{1000 * clip / n:.0f} | {1000 * opt / n:.0f} | {padded / n / batch_size:.1f} | "
        f"{1 - real / padded:.1%} | {statistics.mean(w[5] for w in window):.0f} | {rss:.0f} | "
        f"{matmul_ms:.0f} | {adamw_ms:.0f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
