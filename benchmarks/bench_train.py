"""Training and evaluation throughput, side by side on the same model, data and batch size:

  (a) the notebook loop this project replaces: every text padded to 128 tokens, fp32, eager
      attention with attention weights returned, plain Adam;
  (b) Hugging Face's Trainer as a careful user sets it up: bf16 where available, dynamic
      padding, length-grouped batches;
  (c) emotion_lab exactly as the CLI runs it (`python -m emotion_lab ...`, numbers read back
      from the run's MLflow metrics).

Each variant runs in its own process, so peak memory (max RSS, or CUDA peak) is its own.

    HF_HUB_CACHE=$PWD/../shared/hf-hub HF_HUB_OFFLINE=1 \\
        python benchmarks/bench_train.py --data ../shared/data/emotion        # CPU
    python benchmarks/bench_train.py --data dair-ai/emotion --gpu --samples 16000   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def _peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _texts(args: argparse.Namespace) -> tuple[list[str], list[int], list[str], list[int]]:
    from emotion_lab.config import DataConfig
    from emotion_lab.data import load_raw

    raw = load_raw(DataConfig(path=args.data))
    train, val = (
        raw["train"].select(range(args.samples)),
        raw["validation"].select(range(args.eval_samples)),
    )
    return list(train["text"]), list(train["label"]), list(val["text"]), list(val["label"])


def _model(args: argparse.Namespace, attn: str):
    from emotion_lab.config import Init, ModelConfig
    from emotion_lab.modeling import build_model, load_tokenizer

    cfg = ModelConfig(name_or_path=args.model)
    tokenizer = load_tokenizer(cfg.tokenizer_name)
    torch.manual_seed(0)
    labels = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    return tokenizer, build_model(cfg, Init.scratch, labels, tokenizer, attn_implementation=attn)


def notebook(args: argparse.Namespace) -> dict[str, float]:
    device = "cuda" if args.gpu else "cpu"
    texts, labels, val_texts, val_labels = _texts(args)
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
    return {
        "train": len(texts) / train_s,
        "eval": len(val_texts) / eval_s,
        "peak_mb": _peak_mb(device),
    }


def trainer(args: argparse.Namespace) -> dict[str, float]:
    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    texts, labels, val_texts, val_labels = _texts(args)
    tokenizer, model = _model(args, "sdpa")

    def encode(xs: list[str], ys: list[int]) -> datasets.Dataset:
        enc = tokenizer(xs, truncation=True, max_length=128)
        return datasets.Dataset.from_dict({**enc, "labels": ys})

    bf16 = (
        torch.cuda.is_bf16_supported() if args.gpu else torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=128,
            num_train_epochs=1,
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
            eval_dataset=encode(val_texts, val_labels),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        start = time.perf_counter()
        t.train()
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        t.evaluate()
        eval_s = time.perf_counter() - start
    device = "cuda" if args.gpu else "cpu"
    return {
        "train": len(texts) / train_s,
        "eval": len(val_texts) / eval_s,
        "peak_mb": _peak_mb(device),
    }


def run_cli(
    data: str, overrides: list[str], env: dict[str, str] | None = None
) -> tuple[dict[str, list[float]], float]:
    """One `python -m emotion_lab` job in a scratch dir: its per-epoch metrics from MLflow (in
    epoch order) and the child's peak RSS in MB."""
    from mlflow.tracking import MlflowClient

    data = str(Path(data).resolve()) if Path(data).exists() else data
    with tempfile.TemporaryDirectory() as cwd:
        cmd = [sys.executable, "-m", "emotion_lab", f"data.path={data}", *overrides]
        env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        job = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        if job.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{job.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("emotion_lab").experiment_id])
        history = {
            key: [
                m.value
                for m in sorted(
                    client.get_metric_history(run.info.run_id, key), key=lambda m: m.step
                )
            ]
            for key in ("train_samples_per_s", "val_samples_per_s", "epoch_train_loss")
        }
    return history, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def emotion_lab(args: argparse.Namespace) -> dict[str, float]:
    history, peak_mb = run_cli(
        args.data,
        [
            f"model.name_or_path={args.model}",
            "init=scratch",
            f"data.max_train_samples={args.samples}",
            f"data.max_eval_samples={args.eval_samples}",
            "trainer.epochs=1",
            f"trainer.batch_size={args.batch_size}",
            "trainer.eval_batch_size=128",
            "tracking.log_model=false",
            f"trainer.cpu={not args.gpu}",
        ],
    )
    return {
        "train": history["train_samples_per_s"][0],
        "eval": history["val_samples_per_s"][0],
        "peak_mb": peak_mb,
    }


VARIANTS = {"a_notebook": notebook, "b_trainer": trainer, "c_emotion_lab": emotion_lab}


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
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(VARIANTS[args.variant](args)))
        return
    results = {}
    for name in VARIANTS:
        argv = [sys.executable, __file__, *sys.argv[1:], "--variant", name]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    a, b, c = results["a_notebook"], results["b_trainer"], results["c_emotion_lab"]
    print(
        f"\n{args.model}, {args.samples} training / {args.eval_samples} eval texts, "
        f"batch {args.batch_size}, {'GPU' if args.gpu else f'CPU ({os.cpu_count()} cores)'}\n"
    )
    print("| variant | train samples/s | eval samples/s | peak memory MB |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['train']:.1f} | {r['eval']:.1f} | {r['peak_mb']:.0f} |")
    print(f"\ntrain c/a = {c['train'] / a['train']:.1f}x   c/b = {c['train'] / b['train']:.2f}x")
    print(f"eval  c/a = {c['eval'] / a['eval']:.1f}x   c/b = {c['eval'] / b['eval']:.2f}x")


if __name__ == "__main__":
    main()
