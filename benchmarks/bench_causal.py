"""Time the causal analysis of a scratch/pretrained pair at the default sample size.

    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
        python benchmarks/bench_causal.py --data ../shared/data/emotion [--model minilm]

The cost depends on the shapes (layers, heads, width, text lengths), not on the weights, so two
scratch-initialised models of the size measured stand in for trained ones (no pretrained
distilgpt2 weights are needed); ``--pretrained`` loads the second model's pretrained weights
where they exist (MiniLM). Prints each pass's time per model, the head matching of the pair and
the total, which is what `python -m emotion_lab.attention sweep_id=...` adds with causal=true
(figures and logging come on top, a few seconds).
"""

from __future__ import annotations

import argparse
import time

import torch

from emotion_lab.attention import causal, matching
from emotion_lab.attention.config import AttentionConfig
from emotion_lab.attention.extract import EAGER, LoadedModel, _ready
from emotion_lab.attention.sampling import causal_sample
from emotion_lab.attention.tokens import encode_texts
from emotion_lab.config import DataConfig, Init, ModelConfig
from emotion_lab.modeling import build_model, load_tokenizer

MODELS = {"distilgpt2": "distilgpt2", "minilm": "sentence-transformers/all-MiniLM-L6-v2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset dir or hub id (dair-ai/emotion)")
    parser.add_argument("--model", default="distilgpt2", choices=sorted(MODELS))
    parser.add_argument("--pretrained", action="store_true", help="second model pretrained")
    defaults = AttentionConfig()
    parser.add_argument("--num-texts", type=int, default=defaults.num_causal_texts)
    args = parser.parse_args()

    data = DataConfig(path=args.data)
    sample = causal_sample(data, None, args.num_texts, seed=defaults.seed)
    cfg = ModelConfig(name_or_path=MODELS[args.model])
    tokenizer = load_tokenizer(cfg.tokenizer_name)
    settings = causal.Settings.of(defaults)
    inits = [Init.scratch, Init.pretrained if args.pretrained else Init.scratch]
    total = time.perf_counter()
    attention = []
    for seed, init in enumerate(inits):
        torch.manual_seed(seed)
        model = build_model(cfg, init, sample.label_names, tokenizer, attn_implementation=EAGER)
        loaded: LoadedModel = _ready(f"{init.value}-{args.model}-{seed}", model, tokenizer)
        start = time.perf_counter()
        result = causal.analyse_model(loaded, sample, settings)
        layers, heads = loaded.shape
        print(
            f"{loaded.name} ({layers} layers x {heads} heads), {len(result.gold)} texts: "
            f"causal analysis {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        encoded = encode_texts(tokenizer, sample.texts, cfg.max_length)[: defaults.match_texts]
        attention.append(matching.attention_of(loaded, encoded, defaults.batch_size))
    start = time.perf_counter()
    matching.match_heads(matching.js_distances(*attention))
    print(f"head matching: {time.perf_counter() - start:.1f} s")
    print(
        f"total for the pair: {time.perf_counter() - total:.1f} s "
        f"({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
