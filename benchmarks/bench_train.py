"""Training, evaluation and whole-process speed, peak memory, the roofline and per-job overhead,
side by side on the same model, texts and batch size:

  (a) the notebook loop this project replaces: every text padded to 128 tokens, fp32, eager
      attention with attention weights returned, plain Adam;
  (b) Hugging Face's Trainer as a careful user sets it up: bf16 where the hardware has it,
      dynamic padding, length-grouped batches, its fused AdamW; it trains, then evaluates the
      validation split and predicts the test split, as (c) does;
  (c) emotion_lab exactly as the CLI runs it (`python -m emotion_lab ...`, numbers read back
      from the run's MLflow metrics).

Every variant runs in its own process, its peak memory measured by the process that waits for
it (its high-water RSS; CUDA's max_memory_allocated on a GPU). The variants alternate,
`--repeats` times; cells are medians, with the range when repeated.

Roofline: a training step's useful work is 6 x (non-embedding parameters) x (real, non-pad
tokens) FLOP (forward 2, backward 4 per parameter and token); the achieved FLOP/s over the
training time is shown as a share of the machine's measured matmul peak in the precision
`trainer.mixed_precision=auto` picks.

Overhead: a job's wall time less its training and evaluation compute, broken down by phase on a
tiny job (the `<phase>_seconds` metrics every job logs).

    HF_HUB_CACHE=$PWD/../shared/hf-hub HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
        python benchmarks/bench_train.py --data ../shared/data/emotion        # CPU
    python benchmarks/bench_train.py --data dair-ai/emotion --gpu --samples 16000   # on a GPU

``--cli KEY=VALUE ...`` adds CLI overrides to (c) alone, e.g. a change to the method.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: the checkout's package and process helper

import torch  # noqa: E402

from tests.processes import Finished, run_cli, run_process  # noqa: E402

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
GOALS = {"train": 1.5, "process": 1.3, "eval": 2.0}


def _splits(args: argparse.Namespace):
    """The rows the CLI job trains and evaluates on (its seeded, stratified samples), so that
    every variant sees the same texts."""
    from emotion_lab.config import DataConfig
    from emotion_lab.data import load_splits

    cfg = DataConfig(
        path=args.data, max_train_samples=args.samples, max_eval_samples=args.eval_samples
    )
    return load_splits(cfg)


def _texts(args: argparse.Namespace) -> tuple[list[str], list[int], list[str], list[int]]:
    splits = _splits(args)
    train, val, test = splits.train, splits.validation, splits.test
    return (
        list(train["text"]),
        list(train["label"]),
        list(val["text"]) + list(test["text"]),
        list(val["label"]) + list(test["label"]),
    )


def _model(args: argparse.Namespace, attn: str):
    """The model as the hub's config defines it, for (a) and (b): emotion_lab's own speed
    options (``model.fused_gelu``) are (c)'s to show."""
    from emotion_lab.config import Init, ModelConfig
    from emotion_lab.modeling import build_model, load_tokenizer

    cfg = ModelConfig(name_or_path=args.model, fused_gelu=False)
    tokenizer = load_tokenizer(cfg.tokenizer_name)
    torch.manual_seed(0)
    return tokenizer, build_model(cfg, Init.scratch, LABELS, tokenizer, attn_implementation=attn)


def _cuda_peak(args: argparse.Namespace) -> dict[str, float]:
    return {"cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if args.gpu else {}


def notebook(args: argparse.Namespace) -> dict[str, float]:
    device = "cuda" if args.gpu else "cpu"
    texts, labels, eval_texts, eval_labels = _texts(args)
    val_texts, val_labels = eval_texts[: args.eval_samples], eval_labels[: args.eval_samples]
    tokenizer, model = _model(args, "eager")
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-5)

    def batches(xs: list[str], ys: list[int]):
        for i in range(0, len(xs), args.batch_size):
            enc = tokenizer(
                xs[i : i + args.batch_size],
                padding="max_length",
                max_length=128,
                truncation=True,
                return_tensors="pt",
            ).to(device)
            yield enc, torch.tensor(ys[i : i + args.batch_size], device=device)

    start = time.perf_counter()
    for _epoch in range(args.epochs):
        for enc, y in batches(texts, labels):
            out = model(**enc, labels=y, output_attentions=True)
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            _ = out.loss.item()
    train_s = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for enc, _y in batches(val_texts, val_labels):
            model(**enc, output_attentions=True).logits.argmax(-1).tolist()
    eval_s = time.perf_counter() - start
    # The notebook evaluates the validation split once, at the end: its compute is train +
    # validation.
    return {
        "train_s": train_s,
        "eval_s": eval_s,
        "eval_passes": 1,
        "compute_s": train_s + eval_s,
        **_cuda_peak(args),
    }


def trainer(args: argparse.Namespace) -> dict[str, float]:
    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    texts, labels, eval_texts, eval_labels = _texts(args)
    tokenizer, model = _model(args, "sdpa")

    def encode(xs: list[str], ys: list[int]) -> datasets.Dataset:
        enc = tokenizer(xs, truncation=True, max_length=128)
        return datasets.Dataset.from_dict({**enc, "labels": ys})

    n = args.eval_samples
    bf16 = (
        torch.cuda.is_bf16_supported() if args.gpu else torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=128,
            num_train_epochs=args.epochs,
            learning_rate=5e-5,
            bf16=bf16,
            train_sampling_strategy="group_by_length",
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=not args.gpu,
            disable_tqdm=True,
        )
        t = Trainer(
            model=model,
            args=targs,
            train_dataset=encode(texts, labels),
            eval_dataset=encode(eval_texts[:n], eval_labels[:n]),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        start = time.perf_counter()
        t.train()
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        t.evaluate()
        eval_s = time.perf_counter() - start
        start = time.perf_counter()
        t.predict(encode(eval_texts[n:], eval_labels[n:]))
        test_s = time.perf_counter() - start
    return {
        "train_s": train_s,
        "eval_s": eval_s,
        "eval_passes": 1,  # the validation split once, at the end
        "compute_s": train_s + eval_s + test_s,
        **_cuda_peak(args),
    }


def metric_history(client, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def cli_job(data: str, overrides: list[str], sweep: bool = False) -> tuple[dict, Finished]:
    """One `python -m emotion_lab` job (or, with ``sweep``, a multirun) in a scratch dir: each
    job run's metrics (the full history of the per-epoch ones, in epoch order) and the process."""
    from mlflow.tracking import MlflowClient

    from emotion_lab.store import names

    data = str(Path(data).resolve()) if Path(data).exists() else data
    with tempfile.TemporaryDirectory() as cwd:
        args = ["-m"] if sweep else []
        done = run_cli([*args, f"data.path={data}", *overrides], Path(cwd), timeout=7200)
        if done.returncode:
            sys.exit(f"emotion_lab {' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
        experiment = client.get_experiment_by_name("emotion_lab")
        runs = [
            r
            for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get(names.ROLE_TAG) == names.ROLE_JOB
        ]
        jobs = []
        for run in runs:
            metrics = dict(run.data.metrics)
            metrics |= {k: int(run.data.params[k]) for k in ("val_samples", "test_samples")}
            for key in ("train_samples_per_s", "val_samples_per_s", "epoch_train_loss"):
                metrics[key] = metric_history(client, run.info.run_id, key)
            jobs.append(metrics)
    return {"jobs": jobs}, done


def _cli_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"model.name_or_path={args.model}",
        "init=scratch",
        f"data.max_train_samples={args.samples}",
        f"data.max_eval_samples={args.eval_samples}",
        f"trainer.epochs={args.epochs}",
        f"trainer.batch_size={args.batch_size}",
        "trainer.eval_batch_size=128",
        "tracking.log_model=false",
        f"trainer.cpu={not args.gpu}",
        *args.cli,
    ]


def _job_compute(m: dict) -> tuple[float, float, float]:
    """Training, validation and test seconds of a job, from its logged metrics."""
    val = sum(m["val_samples"] / sps for sps in m["val_samples_per_s"])
    return m["train_seconds"], val, m["test_samples"] / m["test_samples_per_s"]


def run_variant(name: str, args: argparse.Namespace, argv: list[str]) -> dict[str, float]:
    """One variant in its own process: its seconds, samples/s, peak memory."""
    if name == "c_emotion_lab":
        found, done = cli_job(args.data, _cli_overrides(args))
        (m,) = found["jobs"]
        train_s, val_s, test_s = _job_compute(m)
        r = {"train_s": train_s, "eval_s": val_s, "compute_s": train_s + val_s + test_s}
        r["eval_passes"] = len(m["val_samples_per_s"])  # the validation split, every epoch
        peak = m["peak_memory_mb"] if args.gpu else done.peak_mb
    else:
        cmd = [sys.executable, __file__, *argv, "--variant", name]
        _, done = run_process(cmd, REPO, timeout=7200)
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        peak = r.pop("cuda_peak_mb") if args.gpu else done.peak_mb
    return {
        "train": args.samples * args.epochs / r["train_s"],
        "eval": args.eval_samples * r["eval_passes"] / r["eval_s"],
        "train_s": r["train_s"],
        "process": done.seconds,
        "overhead": done.seconds - r["compute_s"],
        "peak_mb": peak,
    }


def matmul_peak(precision: str, device: str, width: int) -> float:
    """The best FLOP/s of matrix products in ``precision``: a model's layer shapes at 1024
    tokens, and 2048 cubed; each timed after a warm-up, best of 5."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[precision]
    shapes = [(1024, width, 3 * width), (1024, width, width), (1024, width, 4 * width)]
    shapes += [(1024, 4 * width, width), (2048, 2048, 2048)]
    best = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        reps = max(3, int(2e10 / (2 * m * k * n)))
        for trial in range(6):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            if trial:  # the first is the warm-up
                best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start))
    return best


def training_work(args: argparse.Namespace) -> tuple[int, int, int]:
    """Non-embedding parameters, and the real (non-pad) tokens of the training texts after
    truncation, as the CLI tokenizes them; and the model width."""
    from emotion_lab.data import tokenize_splits

    tokenizer, model = _model(args, "sdpa")
    embeddings = {
        id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    params = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    tokens = sum(tokenize_splits(_splits(args), tokenizer, 128).train_lengths)
    return params, tokens, model.config.hidden_size


def overhead(args: argparse.Namespace) -> tuple[list[tuple[str, float]], float]:
    """A tiny job's wall time, phase by phase; returns the rows and the overhead in seconds."""
    from emotion_lab.store import names

    tiny = [
        "model=tiny_gpt2",
        "init=scratch",
        "data.max_train_samples=96",
        "data.max_eval_samples=48",
        "trainer.epochs=1",
        "trainer.batch_size=16",
        "tracking.log_model=false",
        f"trainer.cpu={not args.gpu}",
    ]
    found, done = cli_job(args.data, tiny)
    (m,) = found["jobs"]
    train_s, val_s, test_s = _job_compute(m)
    phase = {p: m[names.phase_metric(p)] for p in names.PHASES}
    rows = [
        ("interpreter, imports, Hydra config, exit", done.seconds - sum(phase.values())),
        ("Accelerate, MLflow store and run, params", phase["start"]),
        ("tokenizer, data load and tokenization (datasets cache)", phase["data"]),
        ("model, optimizer, loaders, Accelerate prepare", phase["model"]),
        ("training compute", train_s),
        ("validation compute", val_s),
        ("checkpoints, epoch logging", phase["fit"] - train_s - val_s),
        ("test compute", test_s),
        ("final metrics, report, confusion matrix", phase["finish"] - test_s),
        (
            "of these: dataset inputs, provenance, system metrics",
            m[names.RECORDS_SECONDS],
        ),
        ("whole process", done.seconds),
    ]
    return rows, done.seconds - train_s - val_s - test_s


def records_cost(data: str) -> str:
    """What a job's dataset inputs and provenance cost on the full data (every row hashed),
    as the main job makes them: measured here, in this process, one at a time."""
    from emotion_lab.config import DataConfig
    from emotion_lab.data import load_splits
    from emotion_lab.store import provenance
    from emotion_lab.store.datasets import dataset_inputs
    from emotion_lab.train.system_metrics import sample

    splits = load_splits(DataConfig(path=data))
    start = time.perf_counter()
    inputs = dataset_inputs(splits)
    datasets_s = time.perf_counter() - start
    start = time.perf_counter()
    provenance.git_state(provenance.CODE_ROOT)
    provenance.source_tags("emotion_lab")
    provenance_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10):
        sample()
    sample_s = (time.perf_counter() - start) / 10
    rows = "/".join(str(json.loads(i.dataset.profile)["num_rows"]) for i in inputs)
    return (
        f"Dataset inputs of the full data ({rows} rows hashed): {datasets_s:.3f} s; provenance "
        f"(git, versions): {provenance_s:.3f} s; one system-metrics sample: {sample_s * 1000:.2f} "
        f"ms (one per tracking.system_metrics_interval_s, 10 s by default)"
    )


def sweep(args: argparse.Namespace) -> str:
    """A seed sweep of the main job in one process: how much of its wall time is training, the
    overhead each job adds, and what the process pays once."""
    from emotion_lab.store import names

    seeds = ",".join(str(s) for s in range(1, args.sweep_jobs + 1))
    found, done = cli_job(args.data, [*_cli_overrides(args), f"seed={seeds}"], sweep=True)
    jobs = found["jobs"]
    train = sum(m["train_seconds"] for m in jobs)
    compute = sum(sum(_job_compute(m)) for m in jobs)
    in_jobs = sum(m[names.phase_metric(p)] for m in jobs for p in names.PHASES)
    return (
        f"{len(jobs)}-job seed sweep (`-m seed={seeds}`): {done.seconds:.0f} s start to exit, "
        f"{100 * train / done.seconds:.0f}% of it training, "
        f"{100 * compute / done.seconds:.0f}% training and evaluation. Overhead per job "
        f"(MLflow run, data from the cache, model, checkpoints, final logging): "
        f"{(in_jobs - compute) / len(jobs):.1f} s; once per sweep (interpreter, imports, Hydra, "
        f"the sweep's parent run and summary, exit): {done.seconds - in_jobs:.1f} s"
    )


def cpu_kind() -> tuple[str, str]:
    """The CPU's model name and the flags that decide matmul speed."""
    from emotion_lab.train.speed import cpu_flags

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), "")
    flags = cpu_flags()
    shown = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags]
    return name or "unknown CPU", " ".join(shown) or "none of amx_bf16/avx512_bf16/avx512f/avx2"


def cell(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


Results = dict[str, list[dict[str, float]]]


def median_of(results: Results, name: str, key: str) -> float:
    """A variant's median of one figure over its repeats."""
    return statistics.median(r[key] for r in results[name])


def print_ratios(results: Results, ceiling: float) -> dict[str, float]:
    """The goals' ratios, medians against medians; returns them."""

    def med(name: str, key: str) -> float:
        return median_of(results, name, key)

    a, b, c = "a_notebook", "b_trainer", "c_emotion_lab"
    ratios = {
        "train": med(c, "train") / med(b, "train"),
        "process": med(b, "process") / med(c, "process"),
        "eval": med(c, "eval") / med(b, "eval"),
    }
    print()
    for key, label in (
        ("train", "training loop"),
        ("process", "whole process"),
        ("eval", "evaluation"),
    ):
        print(f"c/b {label}: {ratios[key]:.2f}x (goal {GOALS[key]}x)")
    memory = med(c, "peak_mb") / med(b, "peak_mb")
    print(f"c/b peak memory: {memory:.2f} (goal at most 1)")
    if a in results:
        print(
            f"c/a training loop: {med(c, 'train') / med(a, 'train'):.1f}x; "
            f"the matmul peak allows {ceiling / med(a, 'train'):.1f}x"
        )
    return ratios


VARIANTS = {"a_notebook": notebook, "b_trainer": trainer, "c_emotion_lab": None}


def arguments(description: str, eval_samples: int) -> argparse.ArgumentParser:
    """The options every benchmark here shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="dataset dir or hub id")
    parser.add_argument("--model", default="distilgpt2")
    parser.add_argument("--samples", type=int, default=640, help="training texts per epoch")
    parser.add_argument("--eval-samples", type=int, default=eval_samples)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gpu", action="store_true", help="run on CUDA")
    return parser


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], eval_samples=1000)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per variant")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of every variant")
    parser.add_argument("--sweep-jobs", type=int, default=0, help="also time a seed sweep")
    parser.add_argument(
        "--skip-notebook",
        action="store_true",
        help="leave out (a), which takes about 50 min for a full-size epoch on 2 CPU cores",
    )
    parser.add_argument(
        "--cli",
        nargs="*",
        default=[],
        help="more overrides for (c), e.g. optimizer.lazy_embedding=true (a change to the method)",
    )
    parser.add_argument("--variant", choices=["a_notebook", "b_trainer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(VARIANTS[args.variant](args)))
        return
    from emotion_lab.config import TrainerConfig
    from emotion_lab.train.job import resolve_precision

    argv = sys.argv[1:]
    device = "cuda" if args.gpu else "cpu"
    precision = resolve_precision(TrainerConfig(cpu=not args.gpu))
    params, tokens, width = training_work(args)
    peaks = [matmul_peak(precision, device, width)]
    variants = [name for name in VARIANTS if not (args.skip_notebook and name == "a_notebook")]
    results: Results = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name in variants:
            results[name].append(run_variant(name, args, argv))
            print(f"{name}: {results[name][-1]}", file=sys.stderr, flush=True)
    peaks.append(matmul_peak(precision, device, width))
    peak = max(peaks)
    phases, tiny_overhead = overhead(args)

    flop = 6 * params * tokens * args.epochs
    ceiling = peak / (flop / (args.samples * args.epochs))  # samples/s at 100% of the peak
    if args.gpu:
        machine, flags = torch.cuda.get_device_name(), "CUDA"
    else:
        machine, flags = cpu_kind()
    date = datetime.date.today().isoformat()
    print(
        f"\n{date} · {machine} · {flags} · {os.cpu_count()} cores · precision {precision} · "
        f"torch {torch.__version__}\n"
        f"{args.model} from scratch, {args.samples} training texts ({tokens} real tokens), "
        f"batch {args.batch_size}, {args.epochs} epoch(s); {args.eval_samples} validation and "
        f"{args.eval_samples} test texts; medians of {args.repeats} alternating runs "
        "(range in brackets)\n"
        + (f"(c) also with: {' '.join(args.cli)}\n" if args.cli else "")
        + f"Matmul peak in {precision}: {peak / 1e9:.0f} GFLOP/s (measured before and after: "
        f"{' and '.join(f'{p / 1e9:.0f}' for p in peaks)}). Training work: 6 x {params / 1e6:.1f}M "
        f"non-embedding parameters x {tokens} real tokens = {flop / 1e12:.2f} TFLOP; "
        f"at the peak: {ceiling:.1f} samples/s.\n"
    )
    print(
        "| variant | train samples/s | eval samples/s | whole process s | overhead s "
        "| peak memory MB | roofline: train FLOP/s / matmul peak |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        roof = [100 * flop / r["train_s"] / peak for r in runs]
        cells = [cell([r[k] for r in runs], ".1f") for k in ("train", "eval", "process")]
        cells += [cell([r["overhead"] for r in runs], ".1f")]
        cells += [cell([r["peak_mb"] for r in runs], ".0f"), cell(roof, ".0f") + "%"]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"| matmul peak | {ceiling:.1f} | | | | | 100% |")

    def med(name: str, key: str) -> float:
        return median_of(results, name, key)

    c, b = "c_emotion_lab", "b_trainer"
    ratios = print_ratios(results, ceiling)
    print("\nOverhead of a tiny job (model=tiny_gpt2, 96 training and 48 evaluation texts):\n")
    print("| phase | seconds |\n|---|---|")
    for label, seconds in phases:
        print(f"| {label} | {seconds:.2f} |")
    print(f"\nOverhead (whole process less training and evaluation compute): {tiny_overhead:.1f} s")
    print(records_cost(args.data))
    if args.sweep_jobs:
        print(sweep(args))
    roof_c = 100 * flop / med(c, "train_s") / peak
    print(
        "\nRow for docs/benchmarks.md:\n"
        "| date | machine | flags | precision | matmul peak GFLOP/s | roofline c | train c/b "
        "| process c/b | eval c/b | peak memory c/b | tiny-job overhead s |\n"
        f"| {date} | {machine}, {os.cpu_count()} cores | {flags} | {precision} "
        f"| {peak / 1e9:.0f} | {roof_c:.0f}% | {ratios['train']:.2f}x | {ratios['process']:.2f}x "
        f"| {ratios['eval']:.2f}x | {med(c, 'peak_mb'):.0f} / {med(b, 'peak_mb'):.0f} MB "
        f"| {tiny_overhead:.1f} |"
    )


if __name__ == "__main__":
    main()
