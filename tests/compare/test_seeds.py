"""`python -m emotion_lab.compare` on a real sweep with a seed axis (2 inits x 2 seeds, tiny
GPT-2): configuration statistics equal those of the logged metrics, the per-example predictions
reproduce the logged scores exactly, the paired statistics follow from them, every file is
written and logged to the sweep's parent run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from emotion_lab.config import DataConfig
from emotion_lab.data import load_raw
from tests.conftest import EMOTION, one_error_line, run_cli, tracking_uri

pytestmark = pytest.mark.slow

COMPARE = "emotion_lab.compare"
PNG = b"\x89PNG\r\n\x1a\n"
FILES = {
    "runs.md",
    "runs.csv",
    "groups.csv",
    "paired.csv",
    "per_class_f1.csv",
    "disagreements.csv",
    "expected_max.csv",
    "accuracy.png",
    "val_curves.png",
    "train_loss.png",
    "confusion_difference.png",
    "expected_max.png",
}
SCORES = {
    "val_accuracy": "best_val_accuracy",
    "val_macro_f1": "best_val_macro_f1",
    "test_accuracy": "test_accuracy",
    "test_macro_f1": "test_macro_f1",
}


@pytest.fixture(scope="module")
def sweep(seed_sweep: dict) -> dict:
    cwd, parent, jobs = seed_sweep["cwd"], seed_sweep["parent"], seed_sweep["jobs"]
    compared = run_cli([], cwd, module=COMPARE)
    assert compared.returncode == 0, compared.stderr[-3000:]
    report = cwd / "outputs" / "compare" / parent.data.tags["sweep_id"]
    return {"cwd": cwd, "parent": parent, "jobs": jobs, "report": report, "stdout": compared.stdout}


def _predictions(sweep: dict, run_id: str, split: str) -> pd.DataFrame:
    path = download_artifacts(
        run_id=run_id,
        artifact_path=f"predictions/{split}.parquet",
        tracking_uri=tracking_uri(sweep["cwd"]),
    )
    return pd.read_parquet(path)


def _by_init(sweep: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in sweep["jobs"]:
        out.setdefault(run.data.params["init"], []).append(run)
    return out


def test_predictions_reproduce_the_logged_scores_exactly(sweep: dict):
    raw = load_raw(DataConfig(path=str(EMOTION)))
    labels = list(range(6))
    for run in sweep["jobs"]:
        m = run.data.metrics
        for split, prefix, raw_split in (
            ("test", "test_", "test"),
            ("validation", "best_val_", "validation"),
        ):
            frame = _predictions(sweep, run.info.run_id, split)
            # A stratified sample of 48 rows, each named by its row in the raw split.
            assert frame["row"].nunique() == len(frame) == 48
            true, pred = frame["label"].to_numpy(), frame["pred"].to_numpy()
            assert (true == pred).mean() == m[f"{prefix}accuracy"]
            macro = f1_score(true, pred, labels=labels, average="macro", zero_division=0)
            assert macro == m[f"{prefix}macro_f1"]
            assert list(frame["text"]) == [raw[raw_split][r]["text"] for r in frame["row"]]
            assert list(true) == [raw[raw_split][r]["label"] for r in frame["row"]]
            probs = frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()
            assert probs.shape == (48, 6)
            np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
            assert (probs.argmax(axis=1) == pred).all()


def test_configuration_statistics_equal_those_of_the_logged_metrics(sweep: dict):
    groups = pd.read_csv(sweep["report"] / "groups.csv")
    assert list(groups["init"]) == ["scratch", "pretrained"] and list(groups["n"]) == [2, 2]
    for row in groups.itertuples():
        runs = _by_init(sweep)[row.init]
        for column, metric in SCORES.items():
            values = np.array([r.data.metrics[metric] for r in runs])
            assert getattr(row, f"{column}_mean") == pytest.approx(values.mean(), abs=1e-12)
            assert getattr(row, f"{column}_std") == pytest.approx(values.std(ddof=1), abs=1e-12)
            assert getattr(row, f"{column}_min") == pytest.approx(values.min(), abs=1e-12)
            assert getattr(row, f"{column}_max") == pytest.approx(values.max(), abs=1e-12)
    md = (sweep["report"] / "runs.md").read_text()
    assert "## Configurations over seeds" in md and "Configurations over seeds" in sweep["stdout"]


def test_paired_statistics_follow_from_the_predictions(sweep: dict):
    paired = pd.read_csv(sweep["report"] / "paired.csv").set_index("metric")
    by_init = _by_init(sweep)
    mean_val = {
        init: np.mean([r.data.metrics["best_val_accuracy"] for r in runs])
        for init, runs in by_init.items()
    }
    a, b = paired.loc["test_accuracy", "a"], paired.loc["test_accuracy", "b"]
    assert {a, b} == {"init=scratch", "init=pretrained"}
    if mean_val["scratch"] != mean_val["pretrained"]:
        assert a == f"init={max(mean_val, key=mean_val.get)}"
    runs_a, runs_b = by_init[a.split("=")[1]], by_init[b.split("=")[1]]
    for metric in ("test_accuracy", "test_macro_f1"):
        mean_a = np.mean([r.data.metrics[metric] for r in runs_a])
        mean_b = np.mean([r.data.metrics[metric] for r in runs_b])
        row = paired.loc[metric]
        assert row.a_mean == pytest.approx(mean_a, abs=1e-12)
        assert row.difference == pytest.approx(mean_a - mean_b, abs=1e-12)
        assert row.ci_low <= row.ci_high and row.level == 0.95
        assert "seeds and test examples" in row.covers
    # McNemar on the seed-matched run pairs, from the predictions, by scipy.
    p_values = []
    for seed in ("1", "2"):
        (ra,) = [r for r in runs_a if r.data.params["seed"] == seed]
        (rb,) = [r for r in runs_b if r.data.params["seed"] == seed]
        fa = _predictions(sweep, ra.info.run_id, "test")
        fb = _predictions(sweep, rb.info.run_id, "test")
        assert fa["row"].equals(fb["row"])
        right_a, right_b = fa["pred"] == fa["label"], fb["pred"] == fb["label"]
        only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
        n = only_a + only_b
        p_values.append(binomtest(only_a, n, 0.5).pvalue if n else 1.0)
    assert paired.loc["test_accuracy", "mcnemar_p"] == pytest.approx(max(p_values), rel=1e-9)
    assert "points of test accuracy, 95% CI [" in sweep["stdout"]
    assert "McNemar p" in sweep["stdout"]


def test_expected_max_and_error_analysis(sweep: dict):
    curves = pd.read_csv(sweep["report"] / "expected_max.csv")
    for init, runs in _by_init(sweep).items():
        part = curves[curves["init"] == init]
        scores = [r.data.metrics["best_val_accuracy"] for r in runs]
        assert list(part["budget"]) == [1, 2]
        assert part["expected_max"].iloc[0] == pytest.approx(np.mean(scores), abs=1e-12)
        # Two runs: the best of two draws is the better one unless both draws hit the other.
        expected = 0.75 * max(scores) + 0.25 * min(scores)
        assert part["expected_max"].iloc[1] == pytest.approx(expected, abs=1e-12)
    per_class = pd.read_csv(sweep["report"] / "per_class_f1.csv")
    assert len(per_class) == 6 and per_class["support"].sum() == 48
    raw = load_raw(DataConfig(path=str(EMOTION)))
    disagreements = pd.read_csv(sweep["report"] / "disagreements.csv")
    assert len(disagreements) <= 20
    assert (disagreements["a_label"] != disagreements["b_label"]).all()
    assert list(disagreements["text"]) == [
        raw["test"][int(r)]["text"] for r in disagreements["row"]
    ]
    smaller = np.minimum(disagreements["a_prob"], disagreements["b_prob"])
    assert (np.diff(smaller) <= 0).all()


def test_every_file_is_written_and_logged_to_the_sweep_parent(sweep: dict):
    assert {p.name for p in sweep["report"].iterdir()} == FILES
    for name in FILES:
        if name.endswith(".png"):
            data = (sweep["report"] / name).read_bytes()
            assert data[:8] == PNG and len(data) > 10_000, name
    client = MlflowClient(tracking_uri(sweep["cwd"]))
    logged = client.list_artifacts(sweep["parent"].info.run_id, "compare")
    assert {Path(a.path).name for a in logged} == FILES


def test_named_configurations_are_compared_the_other_way_round(sweep: dict):
    default = pd.read_csv(sweep["report"] / "paired.csv").set_index("metric")
    a, b = default.loc["test_accuracy", "a"], default.loc["test_accuracy", "b"]
    args = [f"a=[{b.replace('=', ':')}]", f"b=[{a.replace('=', ':')}]", "output_dir=named"]
    proc = run_cli(args, sweep["cwd"], module=COMPARE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    named = pd.read_csv(sweep["cwd"] / "named" / "paired.csv").set_index("metric")
    assert (named.loc["test_accuracy", "a"], named.loc["test_accuracy", "b"]) == (b, a)
    for metric in ("test_accuracy", "test_macro_f1"):
        assert named.loc[metric, "difference"] == pytest.approx(-default.loc[metric, "difference"])
    bad = run_cli(["a=[init:nope]", "b=[init:scratch]"], sweep["cwd"], module=COMPARE)
    assert "a: no configuration has init=nope" in one_error_line(bad)
    alone = run_cli(["a=[init:scratch]"], sweep["cwd"], module=COMPARE)
    assert "expected both named, or neither" in one_error_line(alone)
