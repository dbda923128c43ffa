"""Time reading, label encoding and carving a large CSV: the data steps before tokenization.

    python benchmarks/bench_data.py [--rows 1000000] [--with-train-test-split]

Writes a CSV of ``--rows`` tweets with string labels of 6 skewed classes and no validation or
test split (not timed), then times ``load_splits`` on it in a fresh ``datasets`` cache, as a
first run meets it: read the file, encode the labels, carve validation and test (10% each,
stratified), take a stratified sample of 100,000 training rows. A second call shows the cached
case. ``--with-train-test-split`` also times ``Dataset.train_test_split(stratify_by_column=...)``
for one carve, the call the carve reproduces (slow: it reads the labels row by row).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FEELINGS = np.array(["sadness", "joy", "love", "anger", "fear", "surprise"])
SHARES = np.array([0.29, 0.34, 0.08, 0.13, 0.12, 0.04])
WORDS = np.array(
    [
        "i",
        "feel",
        "so",
        "really",
        "a",
        "bit",
        "today",
        "the",
        "news",
        "made",
        "me",
        "quite",
        "not",
        "very",
    ]
)


def write_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    words = WORDS[rng.integers(0, len(WORDS), size=(rows, 12))]
    pd.DataFrame(
        {
            "tweet": [" ".join(w) for w in words],
            "feeling": FEELINGS[rng.choice(len(FEELINGS), size=rows, p=SHARES)],
        }
    ).to_csv(path, index=False)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--with-train-test-split", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_DATASETS_CACHE"] = str(Path(tmp) / "cache")
        # datasets reads its cache location when imported: after the line above.
        import datasets

        from emotion_lab.config import DataConfig
        from emotion_lab.data import load_splits

        datasets.disable_progress_bars()
        csv = Path(tmp) / "tweets.csv"
        start = time.perf_counter()
        write_csv(csv, args.rows)
        print(
            f"wrote {args.rows} rows ({csv.stat().st_size / 1e6:.0f} MB) in "
            f"{time.perf_counter() - start:.1f} s (not counted)"
        )
        cfg = DataConfig(
            path=str(csv),
            text_column="tweet",
            label_column="feeling",
            max_train_samples=100_000,
        )
        for attempt in ("first run (empty cache)", "second run (cached)"):
            start = time.perf_counter()
            data = load_splits(cfg, seed=42)
            elapsed = time.perf_counter() - start
            print(
                f"load + encode + carve + sample, {attempt}: {elapsed:.1f} s -> train "
                f"{len(data.train)}, validation {len(data.validation)}, test {len(data.test)}, "
                f"classes {data.label_names}"
            )
        if args.with_train_test_split:
            encoded = datasets.load_dataset("csv", data_files=str(csv), split="train")
            encoded = encoded.cast_column("feeling", datasets.Value("string"))
            encoded = encoded.class_encode_column("feeling")
            start = time.perf_counter()
            encoded.train_test_split(
                test_size=len(data.validation), stratify_by_column="feeling", seed=42
            )
            print(
                f"one Dataset.train_test_split(stratify_by_column): "
                f"{time.perf_counter() - start:.1f} s"
            )
    print(
        f"{_cpu()}, {os.cpu_count()} cores, datasets {datasets.__version__}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


if __name__ == "__main__":
    main()
