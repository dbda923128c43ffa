"""Time the head-statistics pass: distilgpt2-size model (6 layers x 12 heads), validation texts.

    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
        python benchmarks/bench_attention.py --data ../shared/data/emotion

Prints the time of each step; the statistics pass is what `python -m emotion_lab.attention`
runs per model (figures and MLflow logging come on top, a few seconds).
"""

from __future__ import annotations

import argparse
import time

import torch

from emotion_lab.attention.analysis import head_statistics
from emotion_lab.attention.extract import load_model_config
from emotion_lab.attention.tokens import encode_texts
from emotion_lab.config import DataConfig, Init, ModelConfig
from emotion_lab.data import load_raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset dir or hub id (dair-ai/emotion)")
    parser.add_argument("--model", default="distilgpt2")
    parser.add_argument("--num-texts", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    start = time.perf_counter()
    loaded = load_model_config(ModelConfig(name_or_path=args.model), Init.scratch, seed=0)
    texts = list(load_raw(DataConfig(path=args.data))["validation"]["text"][: args.num_texts])
    setup = time.perf_counter() - start

    start = time.perf_counter()
    encoded = encode_texts(loaded.tokenizer, texts, max_length=128)
    encode = time.perf_counter() - start

    start = time.perf_counter()
    stats = head_statistics(loaded, encoded, args.batch_size)
    elapsed = time.perf_counter() - start

    layers, heads = loaded.shape
    tokens = sum(len(e.input_ids) for e in encoded)
    print(
        f"{args.model} init=scratch ({layers} layers x {heads} heads), {len(texts)} texts, "
        f"{tokens} tokens, batch {args.batch_size}, {torch.get_num_threads()} threads\n"
        f"  load model + data: {setup:.1f} s\n"
        f"  tokenize + labels: {encode:.2f} s\n"
        f"  head statistics:   {elapsed:.1f} s ({len(texts) / elapsed:.0f} texts/s, "
        f"{stats.num_queries} queries)"
    )


if __name__ == "__main__":
    main()
