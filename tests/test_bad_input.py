"""Bad data and models end in one clear message (the CLI prints it as one line, exit 1)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from emotion_lab.config import DataConfig, Init, ModelConfig
from emotion_lab.data import load_splits, tokenize_splits
from emotion_lab.errors import DataError, ModelError
from emotion_lab.modeling import build_model, load_tokenizer
from tests.conftest import SMALL_DATA, one_error_line, run_cli

FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
)


def _write(root: Path, splits: dict[str, dict]) -> Path:
    for name, rows in splits.items():
        datasets.Dataset.from_dict(rows, features=FEATURES).to_parquet(root / f"{name}.parquet")
    return root


def _good(n: int = 6) -> dict:
    return {"text": [f"text number {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig().tokenizer_name)


def test_labels_outside_the_classlabel_range_are_refused(tmp_path: Path, tokenizer):
    bad = {"text": ["a", "b", "c"], "label": [0, 1, -1]}
    path = _write(tmp_path, {"train": bad, "validation": _good(), "test": _good()})
    with pytest.raises(
        DataError, match=r"train.parquet: label -1 in column 'label' \(1 rows\) is outside the"
    ):
        load_splits(DataConfig(path=str(path)), seed=0)


def test_empty_texts_are_dropped_and_counted(tmp_path: Path, tokenizer):
    rows = {"text": ["fine", "", "   ", None, "also fine"], "label": [0, 1, 0, 1, 1]}
    path = _write(tmp_path, {"train": rows, "validation": _good(), "test": _good()})
    splits = tokenize_splits(load_splits(DataConfig(path=str(path)), seed=0), tokenizer, 32)
    assert splits.skipped == {"train": 3, "validation": 0, "test": 0}
    assert len(splits.train) == 2


def test_empty_split_is_refused(tmp_path: Path, tokenizer):
    path = _write(
        tmp_path, {"train": _good(), "validation": _good(), "test": {"text": [], "label": []}}
    )
    with pytest.raises(DataError, match=r"data.path: .*test.parquet: the file has no data rows"):
        load_splits(DataConfig(path=str(path)), seed=0)


def test_model_neither_cached_nor_reachable_says_so():
    with pytest.raises(
        ModelError, match="cannot load the tokenizer of 'no-such-org/no-such-model'"
    ):
        load_tokenizer("no-such-org/no-such-model")


def test_unwritable_sqlite_store_is_one_line(tmp_path: Path):
    # A job that passes pre-flight (scratch), so that the store is what fails.
    args = [*SMALL_DATA, "model=tiny_gpt2", "init=scratch"]
    proc = run_cli([*args, "tracking.uri=sqlite:////proc/no/such/mlflow.db"], tmp_path)
    line = one_error_line(proc)
    assert line.startswith("emotion_lab: error: tracking.uri=sqlite:////proc/no/such/mlflow.db")


def test_pretrained_with_architecture_overrides_is_refused(tokenizer):
    cfg = ModelConfig(config_overrides={"n_layer": 1})
    with pytest.raises(ModelError, match="init=scratch"):
        build_model(cfg, Init.pretrained, ["a", "b"], tokenizer)
