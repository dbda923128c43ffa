"""The user's own files end to end, as a user runs the commands: a sweep on a CSV folder with
string labels, then compare, predict and attention on its runs, all in the user's label names;
a sentence-pair dataset trained and predicted from two columns; a bad file refused in one line
with nothing written to the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.artifacts import download_artifacts
from transformers import AutoModelForSequenceClassification

from emotion_lab.modeling import load_tokenizer
from emotion_lab.store import names
from tests.conftest import one_error_line, run_cli, sweep_runs, tracking_uri
from tests.test_own_data import tweets

FEELINGS = sorted(["joy", "fear", "anger", "sadness"])
FAST = [
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "trainer.checkpointing=false",
    "model.max_length=32",
    "lr=1e-4",
]


@pytest.mark.slow
def test_csv_folder_sweep_then_compare_predict_attention_show_the_label_names(tmp_path: Path):
    data = tmp_path / "my_tweets"
    data.mkdir()
    tweets(100, seed=1).to_csv(data / "train.csv", index=False)
    tweets(40, seed=2).to_csv(data / "test.csv", index=False)
    own = [f"data.path={data}", "data.text_column=tweet", "data.label_column=feeling"]
    proc = run_cli(["-m", "init=scratch,pretrained", "model=minilm", *own, *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, jobs = sweep_runs(tmp_path)
    assert len(jobs) == 2 and {r.info.status for r in jobs} == {"FINISHED"}
    run = next(r for r in jobs if r.data.params["init"] == "pretrained")
    run_id = run.info.run_id
    assert run.data.tags[names.LABEL_NAMES_TAG] == ",".join(FEELINGS)
    assert run.data.params[names.DATA_SOURCE_PARAM.format(split="validation")] == (
        "10 rows carved from train (data.val_fraction=0.1), stratified, seed 42"
    )
    # Both jobs trained and were tested on the same rows.
    sources = [{k: v for k, v in r.data.params.items() if k.startswith("data_")} for r in jobs]
    assert sources[0] == sources[1]
    store = tracking_uri(tmp_path)
    config = download_artifacts(
        run_id=run_id, artifact_path="model/config.json", tracking_uri=store
    )
    assert list(json.loads(Path(config).read_text())["id2label"].values()) == FEELINGS
    report = download_artifacts(
        run_id=run_id, artifact_path=names.REPORT_JSON_ARTIFACT, tracking_uri=store
    )
    assert set(FEELINGS) <= set(json.loads(Path(report).read_text()))

    compare = run_cli([], tmp_path, module="emotion_lab.compare")
    assert compare.returncode == 0, compare.stderr[-3000:]
    assert f"Classes (4): {', '.join(FEELINGS)}" in compare.stdout

    # predict reads the run's own text column (tweet) from the user's file.
    predict = run_cli(
        [f"run_id={run_id}", f"input={data / 'test.csv'}"], tmp_path, module="emotion_lab.predict"
    )
    assert predict.returncode == 0, predict.stderr[-3000:]
    summary = re.search(r"^40 texts; predicted: (.*)$", predict.stdout, re.M)
    assert summary and [p.split()[0] for p in summary.group(1).split("  ")] == FEELINGS

    args = [f"run_id={run_id}", "num_texts=8", "bertviz=false"]
    attention = run_cli(args, tmp_path, module="emotion_lab.attention")
    assert attention.returncode == 0, attention.stderr[-3000:]
    # It sampled the run's own (carved) validation split, and shows the run's classes.
    assert f"Texts from the data {run.info.run_name} trained on: {data}" in attention.stdout
    assert f"Classes: {', '.join(FEELINGS)}. The drawn text 'i feel " in attention.stdout


def _pairs(n: int, seed: int) -> pd.DataFrame:
    rows = tweets(n, seed=seed, skew=False, labels=["yes", "no"])
    return pd.DataFrame(
        {
            "premise": rows.tweet,
            "hypothesis": [f"the writer says {f}" for f in rows.feeling[::-1]],
            "label": rows.feeling,
        }
    )


@pytest.mark.slow
def test_sentence_pairs_train_and_predict_reads_two_columns(tmp_path: Path):
    _pairs(80, seed=3).to_json(tmp_path / "pairs.jsonl", orient="records", lines=True)
    args = [
        "model=tiny_gpt2",
        "init=scratch",
        f"data.path={tmp_path / 'pairs.jsonl'}",
        "data.text_column=[premise,hypothesis]",
        *FAST,
    ]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = sweep_runs(tmp_path)[1]
    assert run.data.params["data.text_column"] == '["premise", "hypothesis"]'

    new = _pairs(6, seed=4)
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "preds.csv"
    predict = run_cli(
        [f"run_id={run.info.run_id}", f"input={tmp_path / 'new.csv'}", f"output={out}"],
        tmp_path,
        module="emotion_lab.predict",
    )
    assert predict.returncode == 0, predict.stderr[-3000:]
    got = pd.read_csv(out)
    # The logged model, run here on each (premise, hypothesis) pair: the same probabilities.
    path = download_artifacts(
        run_id=run.info.run_id, artifact_path="model", tracking_uri=tracking_uri(tmp_path)
    )
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = load_tokenizer(path)
    for row in got.itertuples():
        with torch.no_grad():
            batch = tokenizer(row.premise, row.hypothesis, return_tensors="pt")
            p = model(**batch).logits.softmax(-1)[0]
        for i, name in model.config.id2label.items():
            assert getattr(row, f"prob_{name}") == pytest.approx(float(p[int(i)]), abs=1e-4)

    text_only = run_cli(
        [f"run_id={run.info.run_id}", "text=hello"], tmp_path, module="emotion_lab.predict"
    )
    assert text_only.returncode == 1
    assert "classifies sentence pairs (premise, hypothesis)" in text_only.stderr


def test_bad_file_is_one_line_and_writes_nothing_to_the_store(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    tweets(60, seed=5).to_csv(data / "train.csv", index=False)
    test = tweets(20, seed=6)
    test.loc[:3, "feeling"] = "boredom"
    test.to_csv(data / "test.csv", index=False)
    proc = run_cli(
        [
            "model=tiny_gpt2",
            "init=scratch",
            f"data.path={data}",
            "data.text_column=tweet",
            "data.label_column=feeling",
        ],
        tmp_path,
    )
    assert one_error_line(proc) == (
        f"emotion_lab: error: {data / 'test.csv'}: label 'boredom' in column 'feeling' (4 rows) "
        "never occurs in the training data."
    )
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
