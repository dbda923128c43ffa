"""`python -m emotion_lab.predict` with the model a real tiny run logged: same labels and
probabilities as that model evaluated here, in-process; files in and out; one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient
from transformers import AutoModelForSequenceClassification

from emotion_lab.config import DataConfig
from emotion_lab.data import load_raw
from emotion_lab.modeling import load_tokenizer
from tests.conftest import EMOTION, SMALL_DATA, one_error_line, run_cli, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

PREDICT = "emotion_lab.predict"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict:
    """One finished run with a model/ artifact (lr high enough that it leaves the uniform guess)."""
    cwd = tmp_path_factory.mktemp("predict")
    args = ["init=pretrained", "lr=3e-3", "trainer.mixed_precision=no"]
    proc = run_cli([*args, f"model.name_or_path={tiny_checkpoint}", *SMALL_DATA], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab")
    (run,) = client.search_runs([experiment.experiment_id])
    return {"cwd": cwd, "run_id": run.info.run_id}


@pytest.fixture(scope="module")
def reference(trained: dict):
    """The logged model, loaded and run here on one text at a time (no padding at all)."""
    path = download_artifacts(
        run_id=trained["run_id"],
        artifact_path="model",
        tracking_uri=tracking_uri(trained["cwd"]),
    )
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = load_tokenizer(path)

    def probs(text: str) -> dict[str, float]:
        with torch.no_grad():
            batch = tokenizer(text, truncation=True, max_length=128, return_tensors="pt")
            p = model(**batch).logits.softmax(-1)[0]
        return {model.config.id2label[i]: float(v) for i, v in enumerate(p)}

    return probs


def _texts(n: int) -> list[str]:
    return list(load_raw(DataConfig(path=str(EMOTION)))["test"].select(range(n))["text"])


def _predict(trained: dict, *args: str):
    return run_cli([f"run_id={trained['run_id']}", *args], trained["cwd"], module=PREDICT)


def test_text_gets_the_label_of_the_logged_model(trained: dict, reference):
    text = _texts(1)[0]
    proc = _predict(trained, f"text={text}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    label, p = re.search(r"^label: (\w+) \(([\d.]+)\)$", proc.stdout, re.M).groups()
    expected = reference(text)
    assert label == max(expected, key=expected.get)
    assert float(p) == pytest.approx(expected[label], abs=1e-4)
    # every class is listed with its probability
    rows = dict(re.findall(r"^  (\w+)\s+([\d.]+)", proc.stdout, re.M))
    assert rows.keys() == expected.keys()
    for name, value in rows.items():
        assert float(value) == pytest.approx(expected[name], abs=1e-4)


@pytest.mark.parametrize(("src", "dst"), [("csv", "jsonl"), ("jsonl", "csv")])
def test_file_predictions_match_one_text_at_a_time(trained: dict, reference, tmp_path, src, dst):
    """Batched, length-sorted, padded predictions come back in input order with the same
    probabilities as unpadded single texts; the input's other columns are kept."""
    texts = _texts(40)
    rows = pd.DataFrame({"id": [f"t{i}" for i in range(len(texts))], "tweet": texts})
    inp, out = tmp_path / f"in.{src}", tmp_path / f"out.{dst}"
    if src == "csv":
        rows.to_csv(inp, index=False)
    else:
        inp.write_text("".join(json.dumps(r) + "\n" for r in rows.to_dict("records")))
    proc = _predict(trained, f"input={inp}", f"output={out}", "text_column=tweet", "batch_size=16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = pd.read_csv(out) if dst == "csv" else pd.read_json(out, lines=True)
    assert list(got.id) == list(rows.id) and list(got.tweet) == texts
    assert f"{len(texts)} texts; predicted:" in proc.stdout
    for row in got.itertuples():
        expected = reference(row.tweet)
        assert row.predicted_label == max(expected, key=expected.get)
        for name, p in expected.items():
            assert getattr(row, f"prob_{name}") == pytest.approx(p, abs=1e-4)
        assert row.predicted_prob == pytest.approx(expected[row.predicted_label], abs=1e-4)


def test_file_without_output_prints_a_table(trained: dict, tmp_path: Path):
    inp = tmp_path / "texts.txt"
    inp.write_text("\n".join(_texts(3)) + "\n")
    proc = _predict(trained, f"input={inp}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 texts; predicted:" in proc.stdout
    assert len([x for x in proc.stdout.splitlines() if re.match(r"^\w+\s+0\.\d{4}  ", x)]) == 3


@pytest.fixture(scope="module")
def run_without_model(trained: dict) -> str:
    """A real run in the same store that logged no model (as with tracking.log_model=false)."""
    client = MlflowClient(tracking_uri(trained["cwd"]))
    experiment = client.get_experiment_by_name("emotion_lab")
    run = client.create_run(experiment.experiment_id, run_name="no-model")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_user_mistakes_are_one_line_errors(trained: dict, run_without_model: str, tmp_path):
    no_column = tmp_path / "no_column.csv"
    no_column.write_text("id,tweet\n1,i am happy\n")
    texts = tmp_path / "texts.txt"
    texts.write_text("i am happy\n")
    cases = [
        (["run_id=0123456789abcdef", "text=hi"], "run_id=0123456789abcdef: no such run"),
        ([f"run_id={run_without_model}", "text=hi"], "has no model/ artifact"),
        ([f"run_id={trained['run_id']}", f"input={tmp_path}/nope.csv"], "nope.csv: no such file"),
        ([f"run_id={trained['run_id']}", f"input={no_column}"], "has no column 'text'"),
        ([f"run_id={trained['run_id']}", f"input={texts}", "output=p.txt"], "expected a .csv"),
        (["text=hi"], "give run_id"),
    ]
    for args, message in cases:
        proc = run_cli(args, trained["cwd"], module=PREDICT)
        line = one_error_line(proc)
        assert message in line, (args, line)
