"""The user's own data, on files generated here: CSV / JSONL / Parquet folders, single files and
files per split; string and integer labels; carved splits; stratified samples; sentence pairs;
one-line refusals of bad files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from emotion_lab.config import DataConfig, DataFiles, ModelConfig
from emotion_lab.data import load_splits, tokenize_splits
from emotion_lab.data.splits import Rows, split_off
from emotion_lab.errors import DataError, ModelError
from emotion_lab.modeling import check_max_length, load_tokenizer
from emotion_lab.store import names

FEELINGS = ["joy", "fear", "anger", "sadness"]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def tweets(n: int, seed: int, labels: list = FEELINGS, skew: bool = True) -> pd.DataFrame:
    """``n`` rows of (tweet, feeling); with ``skew``, classes of unequal size (40/30/20/10%)."""
    rng = np.random.default_rng(seed)
    p = np.array([4, 3, 2, 1][: len(labels)], dtype=float) if skew else np.ones(len(labels))
    chosen = rng.choice(len(labels), size=n, p=p / p.sum())
    return pd.DataFrame(
        {
            "tweet": [f"i feel {labels[c]} about thing {i}" for i, c in enumerate(chosen)],
            "feeling": [labels[c] for c in chosen],
        }
    )


def _shares(values: list, classes: list) -> np.ndarray:
    counts = Counter(values)
    return np.array([counts[c] for c in classes]) / len(values)


def test_csv_folder_with_string_labels_carves_a_stratified_validation(tmp_path: Path):
    train, test = tweets(500, seed=1), tweets(100, seed=2)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    cfg = DataConfig(path=str(tmp_path), text_column="tweet", label_column="feeling")
    data = load_splits(cfg, seed=7)

    assert data.label_names == sorted(FEELINGS)
    assert data.train.features["feeling"] == datasets.ClassLabel(names=sorted(FEELINGS))
    # 10% of the 500 training rows, each class within one row of its share of train.
    assert len(data.validation) == 50 and len(data.train) == 450 and len(data.test) == 100
    classes = list(range(len(FEELINGS)))
    source_shares = _shares([sorted(FEELINGS).index(f) for f in train.feeling], classes)
    carved = np.array([Counter(data.validation["feeling"])[c] for c in classes])
    assert np.all(np.abs(carved - source_shares * 50) <= 1), (carved, source_shares * 50)
    # Carved rows are rows of train.csv, with their own text and label, and left train.
    by_text = dict(zip(train.tweet, train.feeling, strict=True))
    for row in data.validation:
        assert by_text[row["tweet"]] == data.label_names[row["feeling"]]
    assert not set(data.validation["tweet"]) & set(data.train["tweet"])
    # The test file is used as it is, and the params say where each split came from.
    assert Counter(data.test["tweet"]) == Counter(test.tweet)
    params = data.params()
    source = names.DATA_SOURCE_PARAM.format
    assert params[source(split="validation")] == (
        "50 rows carved from train (data.val_fraction=0.1), stratified, seed 7"
    )
    assert params[source(split="test")] == f"100 rows of {tmp_path / 'test.csv'}"
    assert params[source(split="train")].startswith("450 rows left after carving, of 500 rows")


def test_the_carve_is_the_rows_train_test_split_picks_and_depends_only_on_the_seed(
    tmp_path: Path,
):
    tweets(300, seed=3).to_csv(tmp_path / "all.csv", index=False)
    cfg = DataConfig(path=str(tmp_path / "all.csv"), text_column="tweet", label_column="feeling")
    first, again, other = load_splits(cfg, 5), load_splits(cfg, 5), load_splits(cfg, 6)
    for split in ("train", "validation", "test"):
        assert getattr(first, split)["tweet"] == getattr(again, split)["tweet"]
    assert first.validation["tweet"] != other.validation["tweet"]

    # The same rows as datasets' own stratified train_test_split with that seed.
    ds = datasets.Dataset.from_pandas(tweets(300, seed=3)).class_encode_column("feeling")
    expected = ds.train_test_split(test_size=30, stratify_by_column="feeling", seed=5)
    labels = np.array(ds["feeling"])
    kept, carved = split_off(Rows(ds, labels), 30, 5, "test", sorted(FEELINGS))
    assert carved.ds["tweet"] == expected["test"]["tweet"]
    assert kept.ds["tweet"] == expected["train"]["tweet"]


def test_single_jsonl_file_with_integer_labels_and_label_names(tmp_path: Path):
    rows = tweets(200, seed=4, labels=[0, 1, 2])
    path = tmp_path / "everything.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.to_dict("records")))
    cfg = DataConfig(
        path=str(path),
        text_column="tweet",
        label_column="feeling",
        label_names=["negative", "neutral", "positive"],
    )
    data = load_splits(cfg, seed=0)
    assert data.label_names == ["negative", "neutral", "positive"]
    assert (len(data.train), len(data.validation), len(data.test)) == (160, 20, 20)
    # Integer labels are the class ids: row i keeps its id, named by data.label_names.
    by_text = dict(zip(rows.tweet, rows.feeling, strict=True))
    for split in (data.train, data.validation, data.test):
        assert all(by_text[r["tweet"]] == r["feeling"] for r in split)

    without_names = load_splits(DataConfig(**{**cfg.__dict__, "label_names": None}), seed=0)
    assert without_names.label_names == ["0", "1", "2"]


def test_label_sorted_csv_sample_holds_every_class(tmp_path: Path):
    rows = tweets(600, seed=5).sort_values("feeling")
    for split in ("train", "validation", "test"):
        rows.to_csv(tmp_path / f"{split}.csv", index=False)
    smallest = rows.feeling.value_counts().min()
    cfg = DataConfig(
        path=str(tmp_path),
        text_column="tweet",
        label_column="feeling",
        max_train_samples=40,
        max_eval_samples=20,
    )
    assert smallest > 40  # the first 40 rows would be a single class
    data = load_splits(cfg, seed=0)
    assert len(data.train) == 40 and len(data.test) == 20
    assert set(data.train["feeling"]) == set(range(4)) == set(data.test["feeling"])
    counts = np.array([Counter(data.train["feeling"])[c] for c in range(4)])
    shares = _shares([sorted(FEELINGS).index(f) for f in rows.feeling], range(4))
    assert np.all(np.abs(counts - shares * 40) <= 1), (counts, shares * 40)
    assert data.params()[names.DATA_SAMPLE_PARAM.format(split="train")] == (
        "40 of 600 rows, stratified, seed 0"
    )


def test_explicit_files_per_split_may_mix_formats(tmp_path: Path):
    tweets(120, seed=6).to_csv(tmp_path / "a.csv", index=False)
    tweets(40, seed=7).to_parquet(tmp_path / "b.parquet")
    pd.DataFrame(tweets(40, seed=8)).to_csv(tmp_path / "c.tsv", sep="\t", index=False)
    cfg = DataConfig(
        files=DataFiles(train=str(tmp_path / "a.csv"), test=str(tmp_path / "b.parquet")),
        text_column="tweet",
        label_column="feeling",
    )
    data = load_splits(cfg, seed=0)
    assert (len(data.train), len(data.validation), len(data.test)) == (108, 12, 40)
    tsv = DataConfig(
        files=DataFiles(train=str(tmp_path / "c.tsv"), validation=str(tmp_path / "b.parquet")),
        text_column="tweet",
        label_column="feeling",
    )
    assert len(load_splits(tsv, seed=0).validation) == 40


def test_unseen_evaluation_label_is_one_line_naming_it(tmp_path: Path):
    tweets(100, seed=9).to_csv(tmp_path / "train.csv", index=False)
    test = tweets(30, seed=10)
    test.loc[:2, "feeling"] = "surprise"
    test.to_csv(tmp_path / "test.csv", index=False)
    cfg = DataConfig(path=str(tmp_path), text_column="tweet", label_column="feeling")
    with pytest.raises(DataError) as e:
        load_splits(cfg, seed=0)
    assert str(e.value) == (
        f"{tmp_path / 'test.csv'}: label 'surprise' in column 'feeling' (3 rows) never occurs "
        "in the training data."
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "name", "overrides", "message"),
    [
        ("", "train.csv", {}, r"data.path: .*train.csv: the file is empty\."),
        (
            "tweet,feeling\n",
            "train.csv",
            {},
            r"train.csv: the file has no data rows \(a header only\?\)",
        ),
        ("a,b\n1,2\n", "train.xlsx", {}, r"train.xlsx: unknown extension '.xlsx'"),
        ('{"tweet": "hi"\n', "train.jsonl", {}, r"train.jsonl: cannot read it as json: "),
        (
            "tweet,mood\nhi,joy\nho,fear\n",
            "train.csv",
            {},
            r"data.label_column=feeling is not a column of .*train.csv \(columns: \['tweet', "
            r"'mood'\]\)",
        ),
        ("tweet,feeling\nhi,joy\nho,\nhu,fear\n", "train.csv", {}, r"1 rows have no label"),
        ("tweet,feeling\nhi,joy\nho,joy\n", "train.csv", {}, r"a single class \['joy'\]"),
        ("tweet,feeling\nhi,0.5\nho,1.5\n", "train.csv", {}, r"labels must be strings, integer"),
        (
            "tweet,feeling\nhi,0\nho,3\n",
            "train.csv",
            {"label_names": ["a", "b"]},
            r"label 3 in column 'feeling' \(1 rows\) is not a class id 0..1 of data.label_names",
        ),
        ("tweet,feeling\nhi,-1\nho,1\n", "train.csv", {}, r"has -1; write the labels as names"),
    ],
    ids=[
        "empty",
        "header-only",
        "extension",
        "unparsable",
        "missing-column",
        "missing-label",
        "one-class",
        "float-labels",
        "id-beyond-names",
        "negative-id",
    ],
)
def test_bad_files_are_one_line_naming_file_column_or_label(
    tmp_path: Path, content, name, overrides, message
):
    path = _write(tmp_path / name, content)
    cfg = DataConfig(path=str(path), text_column="tweet", label_column="feeling", **overrides)
    with pytest.raises(DataError, match=message) as e:
        load_splits(cfg, seed=0)
    assert "\n" not in str(e.value)


def test_folder_without_data_files_and_missing_train_split(tmp_path: Path):
    _write(tmp_path / "notes.md", "nothing here")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=r"split 'train' has no .csv, .tsv, .jsonl"):
        load_splits(DataConfig(path=str(tmp_path)), seed=0)
    tweets(40, seed=0).to_csv(tmp_path / "sub" / "test.csv", index=False)
    with pytest.raises(DataError, match=r"no split 'train' to train on; it has \['test'\]"):
        load_splits(DataConfig(path=str(tmp_path / "sub")), seed=0)


def test_too_few_rows_to_carve_every_class_is_a_clear_error(tmp_path: Path):
    tweets(20, seed=0, skew=False).to_csv(tmp_path / "train.csv", index=False)
    cfg = DataConfig(path=str(tmp_path), text_column="tweet", label_column="feeling")
    with pytest.raises(
        DataError,
        match=r"carving test out of train \(data.test_fraction=0.1\): 2 rows cannot hold one "
        r"of each of the 4 classes",
    ):
        load_splits(cfg, seed=0)


def test_sentence_pairs_are_tokenized_as_pairs(tmp_path: Path):
    rows = pd.DataFrame(
        {
            "premise": [f"a man plays guitar {i}" for i in range(60)],
            "hypothesis": [f"someone makes music {i}" for i in range(60)],
            "label": ["entailment", "contradiction", "neutral"] * 20,
        }
    )
    rows.to_parquet(tmp_path / "train.parquet")
    cfg = DataConfig(path=str(tmp_path), text_column=["premise", "hypothesis"])
    tokenizer = load_tokenizer(MINILM)
    splits = tokenize_splits(load_splits(cfg, seed=0), tokenizer, max_length=64)
    assert splits.label_names == ["contradiction", "entailment", "neutral"]
    row = splits.train[0]
    # [CLS] premise [SEP] hypothesis [SEP], the second text marked by its token type.
    assert tokenizer.convert_ids_to_tokens(row["input_ids"]).count("[SEP]") == 2
    assert set(row["token_type_ids"]) == {0, 1}
    # A pair with an empty side is dropped and counted.
    rows.loc[0, "hypothesis"] = " "
    rows.to_parquet(tmp_path / "train.parquet")
    assert sum(tokenize_splits(load_splits(cfg, seed=0), tokenizer, 64).skipped.values()) == 1


def test_max_length_beyond_the_position_limit_is_refused_naming_it():
    with pytest.raises(ModelError, match=r"model.max_length=2048 .* positions for \(1024\)"):
        check_max_length(ModelConfig(name_or_path="distilgpt2", max_length=2048))
    check_max_length(ModelConfig(name_or_path="distilgpt2", max_length=1024))
    # A scratch architecture with more positions allows more.
    check_max_length(
        ModelConfig(max_length=2048, config_overrides={"n_positions": 2048, "n_layer": 1})
    )
    with pytest.raises(ModelError, match=r"\(512\)"):
        check_max_length(ModelConfig(name_or_path=MINILM, max_length=513))
