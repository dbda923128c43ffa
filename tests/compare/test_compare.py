"""`python -m emotion_lab.compare` on real tiny sweeps: the table equals what MLflow stored,
figures are written and logged to the sweep's parent run, failed jobs are listed, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from tests.conftest import SMALL_DATA, one_error_line, run_cli, tracking_uri

# End-to-end runs of the CLI: minutes on two cores.
pytestmark = pytest.mark.slow

COMPARE = "emotion_lab.compare"
PNG = b"\x89PNG\r\n\x1a\n"
FILES = {
    "runs.md",
    "runs.csv",
    "accuracy.png",
    "val_curves.png",
    "train_loss.png",
    "expected_max.csv",
    "expected_max.png",
}
# Files of a comparison of two configurations (init=pretrained vs init=scratch).
PAIRED_FILES = {"paired.csv", "per_class_f1.csv", "disagreements.csv", "confusion_difference.png"}


def _sweep_id(proc) -> str:
    """The id the training sweep printed in its closing summary."""
    line = next(x for x in proc.stdout.splitlines() if x.startswith("Sweep "))
    return line.split()[1].rstrip(":")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict:
    """One store holding two sweeps: 4 good jobs over init x lr (2 epochs, so there are
    curves and a best epoch to find), then a 2-job sweep whose second job fails for real."""
    cwd = tmp_path_factory.mktemp("compare")
    common = [
        f"model.name_or_path={tiny_checkpoint}",
        "trainer.mixed_precision=no",
        *[o for o in SMALL_DATA if not o.startswith("trainer.epochs")],
    ]
    good = run_cli(
        ["-m", "init=scratch,pretrained", "lr=1e-5,1e-3", "trainer.epochs=2", *common], cwd
    )
    assert good.returncode == 0, good.stderr[-3000:]
    bad = run_cli(["-m", "data.text_column=text,nosuchcolumn", "trainer.epochs=1", *common], cwd)
    assert bad.returncode == 1, bad.stderr[-3000:]
    assert "1 finished, 1 failed" in bad.stdout
    return {"cwd": cwd, "good": _sweep_id(good), "bad": _sweep_id(bad), "good_out": good.stdout}


def _compare(store: dict, *args: str):
    proc = run_cli([*args], store["cwd"], module=COMPARE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def good_report(store: dict) -> Path:
    _compare(store, f"sweep={store['good']}", "register=true")
    return store["cwd"] / "outputs" / "compare" / store["good"]


@pytest.fixture(scope="module")
def latest_report(store: dict):
    proc = _compare(store, "output_dir=latest-report")
    return proc, store["cwd"] / "latest-report"


def _client(store: dict) -> MlflowClient:
    return MlflowClient(tracking_uri(store["cwd"]))


def _runs(store: dict, query: str) -> list:
    client = _client(store)
    experiment = client.get_experiment_by_name("emotion_lab")
    return client.search_runs([experiment.experiment_id], filter_string=query)


def _job_runs(store: dict, sweep_id: str) -> dict:
    runs = _runs(store, f"tags.sweep_id = '{sweep_id}' and tags.`emotion_lab.role` = 'job'")
    return {r.info.run_id: r for r in runs}


def _parent(store: dict, sweep_id: str):
    (parent,) = _runs(store, f"tags.sweep_id = '{sweep_id}' and tags.`emotion_lab.role` = 'sweep'")
    return parent


def _logged(store: dict, sweep_id: str) -> set[str]:
    """Names of the files under compare/ in the sweep's parent run."""
    parent = _parent(store, sweep_id)
    artifacts = _client(store).list_artifacts(parent.info.run_id, "compare")
    return {Path(a.path).name for a in artifacts}


def test_table_numbers_equal_the_metrics_stored_in_mlflow(store: dict, good_report: Path):
    table = pd.read_csv(good_report / "runs.csv", dtype={"lr": str})
    runs = _job_runs(store, store["good"])
    assert set(table.run_id) == set(runs) and len(table) == 4
    # The swept keys, derived from the params that differ, sit between status and the metrics.
    columns = list(table.columns)
    assert columns[columns.index("status") + 1 : columns.index("best_epoch")] == ["init", "lr"]
    client = _client(store)
    for row in table.itertuples():
        run = runs[row.run_id]
        m = run.data.metrics
        assert row.status == "FINISHED"
        assert (row.init, row.lr) == (run.data.params["init"], run.data.params["lr"])
        assert row.job == int(run.data.tags["job_num"])
        for key in ("test_accuracy", "test_macro_f1", "best_epoch", "wall_seconds"):
            assert getattr(row, key) == pytest.approx(m[key], abs=1e-12), key
        # Validation accuracy of the best epoch, as the trainer recorded it.
        assert row.val_accuracy == pytest.approx(m["best_val_accuracy"], abs=1e-12)
        speeds = [x.value for x in client.get_metric_history(row.run_id, "train_samples_per_s")]
        assert len(speeds) == 2
        assert row.train_samples_per_s == pytest.approx(sum(speeds) / 2, rel=1e-9)


def test_report_files_are_written_and_logged_to_the_sweep_parent(store: dict, good_report: Path):
    assert {p.name for p in good_report.iterdir()} == FILES | PAIRED_FILES
    for name in FILES | PAIRED_FILES:
        if name.endswith(".png"):
            data = (good_report / name).read_bytes()
            assert data[:8] == PNG and len(data) > 10_000, name
    markdown = (good_report / "runs.md").read_text()
    assert markdown.count("| FINISHED |") == 4
    assert "![accuracy.png](accuracy.png)" in markdown
    # No seed axis: one run per configuration, no table over seeds, intervals over examples.
    assert "Configurations over seeds" not in markdown
    assert "test examples only" in markdown
    assert _logged(store, store["good"]) == FILES | PAIRED_FILES


def test_register_true_registers_the_best_validation_run(store: dict, good_report: Path):
    client = _client(store)
    (version,) = client.search_model_versions("name = 'emotion_lab'")
    runs = _job_runs(store, store["good"])
    best_val = max(r.data.metrics["best_val_accuracy"] for r in runs.values())
    assert runs[version.run_id].data.metrics["best_val_accuracy"] == best_val
    assert version.tags["sweep_id"] == store["good"]
    assert version.source.endswith(f"{version.run_id}/artifacts/model")
    # The registered version resolves to the run's Hugging Face model directory.
    uri = client.get_model_version_download_uri("emotion_lab", version.version)
    model_dir = download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri(store["cwd"]))
    config = json.loads((Path(model_dir) / "config.json").read_text())
    assert config["id2label"]["0"] == "sadness" and len(config["id2label"]) == 6


def test_latest_sweep_lists_the_failed_run_with_its_error(store: dict, latest_report):
    proc, report = latest_report
    assert f"Sweep {store['bad']}" in proc.stdout
    table = pd.read_csv(report / "runs.csv", keep_default_na=False)
    assert list(table["data.text_column"]) == ["text", "nosuchcolumn"]
    ok, failed = table.iloc[0], table.iloc[1]
    assert ok.status == "FINISHED" and 0 <= float(ok.test_accuracy) <= 1
    assert failed.status == "FAILED" and failed.test_accuracy == ""
    runs = _job_runs(store, store["bad"])
    assert failed.error == runs[failed.run_id].data.tags["error"]
    assert "data.text_column=nosuchcolumn" in failed.error
    assert "did not finish" in proc.stdout and "nosuchcolumn" in proc.stdout
    assert "No paired comparison: best of data.text_column=nosuchcolumn" in proc.stdout
    assert {p.name for p in report.iterdir()} == FILES
    assert _logged(store, store["bad"]) == FILES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep=1999-01-01_00-00-00_000000"], "sweep=1999-01-01_00-00-00_000000: no such sweep"),
        (["tracking.experiment=nope"], "tracking.experiment=nope: no such experiment"),
    ],
)
def test_user_mistakes_are_one_line_errors(store: dict, args: list[str], message: str):
    proc = run_cli(args, store["cwd"], module=COMPARE)
    assert message in one_error_line(proc), proc.stderr[-2000:]


def test_no_store_is_an_error_and_creates_nothing(tmp_path: Path):
    proc = run_cli([], tmp_path, module=COMPARE)
    assert one_error_line(proc).startswith(
        "emotion_lab: error: tracking.uri=sqlite:///outputs/mlflow.db: no MLflow store"
    )
    assert list(tmp_path.iterdir()) == []


def test_sweep_and_compare_print_the_runs_view_of_the_sweep(store: dict):
    """The link opens MLflow's Runs view (not the GenAI view) filtered to this sweep."""

    def link(stdout: str) -> str:
        return next(x for x in stdout.splitlines() if x.startswith("Runs ")).split()[-1]

    from urllib.parse import parse_qs, urlsplit

    from_sweep = link(store["good_out"])
    assert from_sweep == link(_compare(store, f"sweep={store['good']}").stdout)
    url = urlsplit(from_sweep)
    assert f"{url.scheme}://{url.netloc}" == "http://127.0.0.1:5000"
    path, query = url.fragment.split("?")
    experiment = MlflowClient(tracking_uri(store["cwd"])).get_experiment_by_name("emotion_lab")
    assert path == f"/experiments/{experiment.experiment_id}/runs"
    params = parse_qs(query)
    assert params["workflowType"] == ["machine_learning"]
    assert params["searchFilter"] == [f"tags.sweep_id = '{store['good']}'"]
