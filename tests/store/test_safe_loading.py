"""Logged models are loaded from safetensors only and never with their own code: a run's model/
artifact in a real sqlite store, as training logs it, and tampered copies of it whose pickle or
code would leave a marker file if anything ran them."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from transformers import AutoConfig, GPT2ForSequenceClassification

from emotion_lab.attention.extract import load_model_dir
from emotion_lab.compare.config import CompareConfig
from emotion_lab.compare.report import register_best
from emotion_lab.errors import ModelError
from emotion_lab.modeling import load_tokenizer
from emotion_lab.predict.model import load_from_run, predict_proba
from emotion_lab.store.reader import load_logged_model
from tests.conftest import one_error_line, run_cli

LABELS = ["sadness", "joy"]


class _Plant:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _save_model(path: Path) -> None:
    config = AutoConfig.from_pretrained("distilgpt2", n_layer=1, n_head=2, n_embd=16)
    config.num_labels, config.id2label = len(LABELS), dict(enumerate(LABELS))
    config.label2id = {n: i for i, n in enumerate(LABELS)}
    tokenizer = load_tokenizer("distilgpt2")
    config.pad_token_id = tokenizer.pad_token_id
    GPT2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs with a model/ artifact: as logged, pickle-only, and asking to run its own code."""
    root = tmp_path_factory.mktemp("safe-loading")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=(root / "art").as_uri())
    marker = root / "code-ran"
    good = root / "good"
    _save_model(good)

    pickled = root / "pickled"
    shutil.copytree(good, pickled)
    (pickled / "model.safetensors").unlink()
    with (pickled / "pytorch_model.bin").open("wb") as f:
        pickle.dump({"transformer.wte.weight": _Plant(marker)}, f)

    remote = root / "remote"
    shutil.copytree(good, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForSequenceClassification": "evil.EvilModel",
    }
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")

    runs = {}
    for name, folder in {"good": good, "pickled": pickled, "remote": remote}.items():
        run = client.create_run(experiment, run_name=name)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        client.set_terminated(run.info.run_id)
        runs[name] = run.info.run_id
    return {"client": client, "uri": client.tracking_uri, "root": root, "marker": marker, **runs}


def test_a_logged_safetensors_model_loads_and_predicts(store: dict):
    clf = load_from_run(store["client"], store["good"])
    assert clf.label_names == LABELS
    assert predict_proba(clf, ["i feel fine"]).shape == (1, 2)


def test_a_pickle_only_model_is_refused_before_download(store: dict, tmp_path: Path):
    with pytest.raises(ModelError) as err:
        load_logged_model(store["client"], store["pickled"], tmp_path)
    assert str(err.value) == (
        f"run {store['pickled']}: its model/ artifact has no model.safetensors (it holds "
        "pytorch_model.bin); logged models are loaded from safetensors only, because pickle "
        "weights can run code when loaded. Pick another run, or retrain this one."
    )
    assert not list(tmp_path.iterdir())  # nothing was downloaded
    assert not store["marker"].exists()


def test_the_loaders_themselves_take_safetensors_only(store: dict, tmp_path: Path):
    """Even handed a pickle-only folder directly, the attention loader does not unpickle it."""
    folder = Path(
        shutil.copytree(store["root"] / "pickled", tmp_path / "pickled", dirs_exist_ok=True)
    )
    with pytest.raises(ModelError, match="cannot load the classifier saved in"):
        load_model_dir(folder, "pickled")
    assert not store["marker"].exists()


def test_a_model_asking_to_run_its_own_code_does_not_run_it(store: dict):
    """Its config names classes in its own evil.py: the built-in GPT-2 classes load instead."""
    clf = load_from_run(store["client"], store["remote"])
    assert type(clf.model) is GPT2ForSequenceClassification
    assert not store["marker"].exists()


def test_the_registry_refuses_a_pickle_only_model(store: dict):
    best = pd.Series({"run_id": store["pickled"], "val_accuracy": 0.5, "test_accuracy": 0.5})
    with pytest.raises(ModelError, match="has no model.safetensors"):
        register_best(store["client"], best, CompareConfig(), "sweep")
    assert not store["client"].search_registered_models("name = 'emotion_lab'")


@pytest.mark.slow
def test_predict_refuses_a_pickle_only_model_in_one_line(store: dict, tmp_path: Path):
    proc = run_cli(
        [
            f"run_id={store['pickled']}",
            "text=i feel fine",
            f"tracking.uri={store['uri']}",
            "tracking.experiment=e",
        ],
        tmp_path,
        module="emotion_lab.predict",
    )
    assert one_error_line(proc) == (
        f"emotion_lab: error: run {store['pickled']}: its model/ artifact has no "
        "model.safetensors (it holds pytorch_model.bin); logged models are loaded from "
        "safetensors only, because pickle weights can run code when loaded. Pick another run, "
        "or retrain this one."
    )
    assert not store["marker"].exists()
