"""Runs fill MLflow's own places, checked against a real store: dataset inputs with digests,
the source tags, system metrics, the logged pyfunc model (loaded, and served over HTTP), the
registry alias, and compare pooling two sweeps.

One tiny store serves them all: sweep A (seeds 1 and 2), then sweep B (seed 3) of the same
configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from emotion_lab.config import DataConfig
from emotion_lab.data import load_splits
from emotion_lab.store import names
from emotion_lab.store.datasets import digest
from tests.conftest import EMOTION, REPO, free_port, run_cli, tracking_uri

pytestmark = pytest.mark.slow

ARGS = [
    "model=tiny_gpt2",
    "init=scratch",
    f"data.path={EMOTION}",
    "data.max_train_samples=96",
    "data.max_eval_samples=48",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "trainer.mixed_precision=no",
    # A tiny job runs for about a second once its sampler starts: several samples a job.
    "tracking.system_metrics_interval_s=0.2",
]
TEXTS = ["i feel so lucky to have such wonderful friends", "i am furious about this", "meh"]


def _serving(proc: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    """Wait until the server ``proc`` answers ``url`` (it logs to ``log``)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.RequestException:
            time.sleep(0.5)


def _sweep_id(stdout: str) -> str:
    line = next(x for x in stdout.splitlines() if x.startswith("Sweep "))
    return line.split()[1].rstrip(":")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cwd = tmp_path_factory.mktemp("places")
    a = run_cli(["-m", "seed=1,2", *ARGS], cwd)
    assert a.returncode == 0, a.stderr[-3000:]
    b = run_cli(["-m", "seed=3", *ARGS], cwd)
    assert b.returncode == 0, b.stderr[-3000:]
    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab")
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get(names.ROLE_TAG) == names.ROLE_JOB]
    parents = [r for r in runs if r.data.tags.get(names.ROLE_TAG) == names.ROLE_SWEEP]
    return {
        "cwd": cwd,
        "client": client,
        "experiment_id": experiment.experiment_id,
        "a": _sweep_id(a.stdout),
        "b": _sweep_id(b.stdout),
        "a_out": a.stdout,
        "jobs": sorted(jobs, key=lambda r: int(r.data.params[names.SEED_PARAM])),
        "parents": parents,
    }


def test_every_job_logs_its_three_splits_as_dataset_inputs_with_digests(store: dict):
    used = load_splits(DataConfig(path=str(EMOTION), max_train_samples=96, max_eval_samples=48))
    expected = {
        "training": ("emotion-train", digest(used.train), len(used.train), "train"),
        "validation": (
            "emotion-validation",
            digest(used.validation),
            len(used.validation),
            "validation",
        ),
        "testing": ("emotion-test", digest(used.test), len(used.test), "test"),
    }
    assert len({v[1] for v in expected.values()}) == 3
    for run in store["jobs"]:
        found = {}
        for item in run.inputs.dataset_inputs:
            (context,) = [t.value for t in item.tags if t.key == names.DATASET_CONTEXT_TAG]
            ds = item.dataset
            source = json.loads(ds.source)
            columns = [c["name"] for c in json.loads(ds.schema)["mlflow_colspec"]]
            assert {"text", "label"} <= set(columns)
            assert source["path"] == str(EMOTION)
            found[context] = (
                ds.name,
                ds.digest,
                json.loads(ds.profile)["num_rows"],
                source["split"],
            )
        assert found == expected
        assert run.data.params["train_samples"] == str(len(used.train))


def test_job_and_sweep_runs_record_the_code_that_ran_them(store: dict):
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip(f"the checkout under test is not a git repository: {head.stderr.strip()}")
    status = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for run in [*store["jobs"], *store["parents"]]:
        tags = run.data.tags
        assert tags[names.GIT_COMMIT_TAG] == head.stdout.strip()
        assert tags[names.GIT_DIRTY_TAG] == str(bool(status)).lower()
        assert tags[names.SOURCE_NAME_TAG] == "python -m emotion_lab"
        assert "seed=1,2" in tags[names.COMMAND_TAG] or "seed=3" in tags[names.COMMAND_TAG]
        assert tags[names.VERSION_TAG.format(package="torch")].startswith(
            __import__("torch").__version__.split("+")[0]
        )
        artifacts = {a.path for a in store["client"].list_artifacts(run.info.run_id, "source")}
        assert (names.GIT_DIFF_ARTIFACT in artifacts) == bool(status)


def test_jobs_sample_system_metrics(store: dict):
    client = store["client"]
    for run in store["jobs"]:
        for key in (names.SYSTEM_CPU, names.SYSTEM_MEMORY_MB, names.SYSTEM_MEMORY_PERCENT):
            history = client.get_metric_history(run.info.run_id, key)
            steps = [m.step for m in history]
            assert len(steps) >= 2 and len(set(steps)) == len(steps), (key, steps)
        memory = client.get_metric_history(run.info.run_id, names.SYSTEM_MEMORY_PERCENT)
        assert all(0 < m.value <= 100 for m in memory)


def _predict_cli(store: dict, tmp_path: Path, *how: str) -> pd.DataFrame:
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(texts, index=False)
    out = tmp_path / f"preds{len(list(tmp_path.iterdir()))}.jsonl"
    proc = run_cli(
        [*how, f"input={texts}", f"output={out}"], store["cwd"], module="emotion_lab.predict"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_json(out, lines=True)


def _probs(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith(names.PROB_PREFIX)]].to_numpy(float)


def test_the_logged_pyfunc_model_predicts_as_predict_does(store: dict, tmp_path: Path):
    import mlflow

    run = store["jobs"][0]
    expected = _predict_cli(store, tmp_path, f"run_id={run.info.run_id}")
    mlflow.set_tracking_uri(tracking_uri(store["cwd"]))
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    got = model.predict(pd.DataFrame({"text": TEXTS}))
    assert list(got.predicted_label) == list(expected.predicted_label)
    np.testing.assert_allclose(_probs(got), _probs(expected), atol=1e-5)
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["text"]
    labels = run.data.tags[names.LABEL_NAMES_TAG].split(",")
    assert signature.outputs.input_names() == [
        "predicted_label",
        "predicted_prob",
        *(names.PROB_PREFIX + n for n in labels),
    ]
    # The same folder holds the Hugging Face files the readers load, safetensors only.
    files = {Path(a.path).name for a in store["client"].list_artifacts(run.info.run_id, "model")}
    assert {"MLmodel", "model.safetensors", "config.json", "input_example.json"} <= files
    assert not any(f.endswith((".bin", ".pkl")) for f in files)
    # MLflow lists it among the run's logged models, with the run's test metrics.
    (logged,) = store["client"].search_logged_models(
        [store["experiment_id"]], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    linked = {m.key: m.value for m in logged.metrics}
    assert linked["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
    test_input = next(
        i.dataset for i in run.inputs.dataset_inputs if i.dataset.name == "emotion-test"
    )
    assert {m.dataset_digest for m in logged.metrics if m.key.startswith("test_")} == {
        test_input.digest
    }


def test_mlflow_models_serve_answers_as_predict_does(store: dict, tmp_path: Path):
    run = store["jobs"][1]
    expected = _predict_cli(store, tmp_path, f"run_id={run.info.run_id}")
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    # The server runs uvicorn from the environment's bin folder, as an activated venv has it.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(store["cwd"]), "PATH": path}
    cmd = [str(mlflow_cli), "models", "serve", "-m", f"runs:/{run.info.run_id}/model"]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _serving(server, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log")
        reply = requests.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        got = pd.DataFrame(reply.json()["predictions"])
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert list(got.predicted_label) == list(expected.predicted_label)
    np.testing.assert_allclose(_probs(got), _probs(expected), atol=1e-5)


def test_compare_pools_two_sweeps_and_registers_the_champion(store: dict, tmp_path: Path):
    proc = run_cli(
        [f"sweeps=[{store['a']},{store['b']}]", "register=true", "output_dir=pooled"],
        store["cwd"],
        module="emotion_lab.compare",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    groups = pd.read_csv(store["cwd"] / "pooled" / "groups.csv")
    assert groups["n"].tolist() == [3]
    assert f"pooled with sweep(s) {store['a']}" in proc.stdout
    # The report goes to the newest sweep's parent run.
    (b_parent,) = [p for p in store["parents"] if p.data.tags[names.SWEEP_TAG] == store["b"]]
    logged = {a.path for a in store["client"].list_artifacts(b_parent.info.run_id, "compare")}
    assert "compare/groups.csv" in logged
    assert "Alias @champion now points at version 1 (no version held it)." in proc.stdout

    again = run_cli(
        [f"sweep={store['a']}", "register=true", "output_dir=again"],
        store["cwd"],
        module="emotion_lab.compare",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Alias @champion now points at version 2 (version 1 held it before)." in again.stdout
    champion = store["client"].get_model_version_by_alias("emotion_lab", "champion")
    assert str(champion.version) == "2"

    by_alias = _predict_cli(store, tmp_path, "model_uri=models:/emotion_lab@champion")
    by_run = _predict_cli(store, tmp_path, f"run_id={champion.run_id}")
    pd.testing.assert_frame_equal(by_alias, by_run)


@pytest.fixture
def mlflow_ui(store: dict, tmp_path: Path):
    """A live ``mlflow ui`` over the store, on 127.0.0.1; yields its address."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri"]
    cmd += [tracking_uri(store["cwd"]), "-h", "127.0.0.1", "-p", str(port)]
    log = (tmp_path / "ui.log").open("w")
    ui = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{port}"
    try:
        _serving(ui, address, tmp_path / "ui.log")
        yield address
    finally:
        ui.terminate()
        ui.wait(timeout=30)
        log.close()


def test_the_ui_shows_the_sweeps_jobs_their_datasets_system_metrics_and_signature(
    store: dict, mlflow_ui: str
):
    """Headless Chromium opens the link sweep A printed (on the live UI's port) and renders
    the sweep, its jobs and their three dataset inputs; then a job's System metrics tab and its
    model's MLmodel with the signature. EMOTION_LAB_SCREENSHOTS=<dir> keeps screenshots."""
    from tests.browser import Browser, find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (.ci/run installs Debian's chromium package)")
    shots = os.environ.get("EMOTION_LAB_SCREENSHOTS")
    printed = next(
        x for x in store["a_out"].splitlines() if x.startswith("Runs in the MLflow UI: ")
    )
    link = printed.removeprefix("Runs in the MLflow UI: ")
    assert link.startswith("http://127.0.0.1:5000/#/")
    jobs = [r for r in store["jobs"] if r.data.tags[names.SWEEP_TAG] == store["a"]]
    train = next(
        i.dataset for i in jobs[0].inputs.dataset_inputs if i.dataset.name.endswith("train")
    )
    job = jobs[0]
    with Browser(chromium, height=1250) as browser:
        browser.open(link.replace("http://127.0.0.1:5000", mlflow_ui))
        browser.wait_for_text(f"sweep {store['a']}", "python -m emotion_lab")
        browser.click_selector('button[aria-label="Close"]')  # the assistant's side panel
        # Expand the sweep's parent run: its jobs are nested under it.
        assert browser.click_selector('button[data-component-id*="runnamecellrenderer"]') == 1
        shown = browser.wait_for_text(
            f"emotion-train ({train.digest})", "emotion-validation (", "emotion-test ("
        )
        assert shown.count(job.info.run_name) == len(jobs)
        assert shown.count(f"emotion-train ({train.digest})") == len(jobs)
        assert {"Training", "Validation", "Testing"} <= set(shown.split())
        if shots:
            time.sleep(1)
            browser.screenshot(Path(shots) / "mlflow_datasets.png")

        run_page = names.run_url(mlflow_ui, store["experiment_id"], job.info.run_id)
        browser.open(f"{run_page}/system-metrics?workflowType=machine_learning")
        browser.wait_for_text("System metrics", "cpu_utilization_percentage")
        if shots:
            time.sleep(2)
            browser.screenshot(Path(shots) / "mlflow_system_metrics.png")

        browser.open(f"{run_page}/artifacts/model/MLmodel?workflowType=machine_learning")
        browser.wait_for_text("signature:", "predicted_label", "prob_joy", "loader_module")
        if shots:
            time.sleep(1)
            browser.screenshot(Path(shots) / "mlflow_signature.png")
