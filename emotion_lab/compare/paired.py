"""Two configurations on the same test examples: which two (named by their key values, else
the pair ``store.reader.best_pair`` picks on validation), the paired differences with bootstrap
intervals, McNemar's test, and the error analysis (per-class F1, confusion difference, the
examples they disagree on)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.artifacts import download_artifacts
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from emotion_lab.compare import stats
from emotion_lab.compare.config import CompareConfig
from emotion_lab.confusion import confusion, per_class_f1
from emotion_lab.errors import ConfigError, TrackingError
from emotion_lab.store import names
from emotion_lab.store.datasets import logged_digests
from emotion_lab.store.names import SEED_PARAM
from emotion_lab.store.reader import (
    Group,
    best_group,
    best_pair,
    decided_by,
    group_selection_key,
    monitor_of,
)

# How many disagreements the report lists.
TOP_DISAGREEMENTS = 20


@dataclass
class Choice:
    """A compared configuration and, in words, why it is the one compared."""

    group: Group
    why: str


@dataclass
class Side:
    """A compared configuration's test predictions: one row per finished run (seed)."""

    choice: Choice
    seeds: list[str]
    run_ids: list[str]
    pred: np.ndarray  # (runs, examples) class indices
    probs: np.ndarray  # (runs, examples, classes)
    confusions: np.ndarray  # (runs, classes, classes)

    @property
    def label(self) -> str:
        return self.choice.group.label

    @property
    def mean_probs(self) -> np.ndarray:
        """The configuration's prediction: the mean over its runs of the class probabilities."""
        return self.probs.mean(axis=0)


def _choose(candidates: list[Group], why: str) -> Choice:
    """The candidate validation prefers, with the reason (which part of the rule decided)."""
    chosen = best_group([g.runs for g in candidates])
    if chosen is None:
        raise TrackingError(f"{why}: no configuration has a finished run to compare.")
    group = candidates[chosen]
    n = len(group.finished)
    seeds = f"mean over its {n} seeds" if n > 1 else "one run"
    if len(candidates) == 1:
        return Choice(group, f"{why} ({seeds})")
    keys = [group_selection_key(g.runs) for g in candidates]
    rule = decided_by(keys, chosen, monitor_of(group.finished[0]))
    return Choice(group, f"{why} on validation ({seeds}; {rule})")


def _matches(value: Any, param: str) -> bool:
    """A named key value equals a logged param: as text, or as numbers (1e-4 == 0.0001)."""
    if str(value) == param:
        return True
    try:
        return float(value) == float(param)
    except (TypeError, ValueError):
        return False


def _named(groups: list[Group], keys: list[str], side: str, items: list[str]) -> Choice:
    wanted = dict(item.split(":", 1) for item in items)
    for key in wanted:
        if key not in keys:
            raise ConfigError(
                f"{side}.{key}: not a swept key of this sweep (configurations differ by: "
                f"{', '.join(keys) or 'nothing'})."
            )
    found = [g for g in groups if all(_matches(v, g.values[k]) for k, v in wanted.items())]
    named = " ".join(f"{k}={v}" for k, v in wanted.items())
    if not found:
        have = "; ".join(g.label for g in groups)
        raise ConfigError(f"{side}: no configuration has {named} (configurations: {have}).")
    return _choose(found, f"best configuration with {named}" if len(found) > 1 else named)


def choose_pair(groups: list[Group], keys: list[str], cfg: CompareConfig) -> tuple[Choice, Choice]:
    """The two configurations to compare: those named by ``cfg.a``/``cfg.b``, else the default
    pair of ``store.reader.best_pair`` (which ``attention`` picks too)."""
    if cfg.a:
        a, b = _named(groups, keys, "a", cfg.a), _named(groups, keys, "b", cfg.b)
        if a.group is b.group:
            raise ConfigError(f"a and b both name {a.group.label}: name two configurations.")
        return a, b
    try:
        a, b = best_pair(groups, keys)
    except ConfigError as e:
        raise ConfigError(f"{e} Name two configurations with a.* and b.*.") from None
    return _choose(a.candidates, f"best of {a.key}={a.value}"), _choose(
        b.candidates, f"best of {b.key}={b.value}"
    )


def _test_predictions(client: MlflowClient, run_id: str, tmp: Path) -> pd.DataFrame:
    path = f"{names.PREDICTIONS_ARTIFACT}/{names.TEST_PREDICTIONS}"
    if path not in {a.path for a in client.list_artifacts(run_id, names.PREDICTIONS_ARTIFACT)}:
        raise TrackingError(
            f"run {run_id} has no {path} artifact (trained before jobs logged per-example "
            "predictions): rerun its configuration to compare it."
        )
    local = download_artifacts(
        run_id=run_id,
        artifact_path=path,
        dst_path=str(tmp / run_id),
        tracking_uri=client.tracking_uri,
    )
    return pd.read_parquet(local).sort_values(names.PRED_ROW, kind="stable", ignore_index=True)


def _sorted_by_seed(runs: list) -> list:
    def seed(run) -> tuple[float, str]:
        value = run.data.params.get(SEED_PARAM, "")
        try:
            return float(value), value
        except ValueError:
            return np.inf, value

    return sorted(runs, key=seed)


@dataclass
class Comparison:
    a: Side
    b: Side
    label_names: list[str]
    rows: np.ndarray
    texts: list[str]
    true: np.ndarray
    intervals: dict[str, stats.Interval]
    # McNemar p-value of each seed-matched run pair: (seed of a, seed of b, p).
    mcnemar: list[tuple[str, str, float]]
    level: float
    resamples: int
    covers: str

    @property
    def p_value(self) -> float:
        """The largest McNemar p over the seed-matched pairs (the only one without seeds)."""
        return max(p for *_, p in self.mcnemar)

    def _p_text(self) -> str:
        p = self.p_value
        text = f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"
        if len(self.mcnemar) == 1:
            return f"McNemar p = {text}"
        return f"McNemar p ≤ {text} (largest of {len(self.mcnemar)} seed-matched run pairs)"

    def sentence(self) -> str:
        """The answer in one sentence, the better configuration on test first."""
        acc = self.intervals["accuracy"]
        first, second, sign = (self.a, self.b, 1) if acc.estimate >= 0 else (self.b, self.a, -1)
        low, high = sorted((sign * acc.low, sign * acc.high))
        text = (
            f"{first.label} beats {second.label} by {100 * abs(acc.estimate):.1f} points of "
            f"test accuracy, {self.level:.0%} CI [{100 * low:.1f}, {100 * high:.1f}], "
            f"{self._p_text()}"
        )
        if acc.contains(0):
            text += "; the interval contains 0: this test set does not separate them"
        return text + "."

    def paired_frame(self) -> pd.DataFrame:
        """One row per metric: each side's mean, the difference a - b and its interval."""
        rows = []
        for name, interval in self.intervals.items():
            metric = stats.METRICS[name]
            rows.append(
                {
                    "metric": f"test_{name}",
                    "a": self.a.label,
                    "b": self.b.label,
                    "a_mean": float(metric(self.a.confusions).mean()),
                    "b_mean": float(metric(self.b.confusions).mean()),
                    "difference": interval.estimate,
                    "ci_low": interval.low,
                    "ci_high": interval.high,
                    "level": self.level,
                    "mcnemar_p": self.p_value if name == "accuracy" else np.nan,
                    "a_runs": len(self.a.run_ids),
                    "b_runs": len(self.b.run_ids),
                    "examples": len(self.true),
                    "resamples": self.resamples,
                    "covers": self.covers,
                }
            )
        return pd.DataFrame(rows)

    def per_class_f1(self) -> pd.DataFrame:
        """Per-class test F1 of each side (mean over its runs), side by side."""
        f1_a = per_class_f1(self.a.confusions).mean(axis=0)
        f1_b = per_class_f1(self.b.confusions).mean(axis=0)
        support = np.bincount(self.true, minlength=len(self.label_names))
        return pd.DataFrame(
            {
                "class": self.label_names,
                "support": support,
                "f1_a": f1_a,
                "f1_b": f1_b,
                "difference": f1_a - f1_b,
            }
        )

    def confusion_difference(self) -> np.ndarray:
        """Mean test confusion counts of a minus those of b (rows true, columns predicted)."""
        return self.a.confusions.mean(axis=0) - self.b.confusions.mean(axis=0)

    def disagreements(self, top: int = TOP_DISAGREEMENTS) -> pd.DataFrame:
        """Test examples the two configurations label differently, both most confident first
        (sorted by the smaller of their two probabilities)."""
        pa, pb = self.a.mean_probs, self.b.mean_probs
        label_a, label_b = pa.argmax(axis=1), pb.argmax(axis=1)
        conf_a, conf_b = pa.max(axis=1), pb.max(axis=1)
        differ = np.flatnonzero(label_a != label_b)
        order = differ[np.argsort(-np.minimum(conf_a, conf_b)[differ], kind="stable")][:top]
        name = np.asarray(self.label_names)
        return pd.DataFrame(
            {
                "row": self.rows[order],
                "text": [self.texts[i] for i in order],
                "true": name[self.true[order]],
                "a_label": name[label_a[order]],
                "a_prob": conf_a[order],
                "b_label": name[label_b[order]],
                "b_prob": conf_b[order],
            }
        )


def _side(choice: Choice, frames: dict[str, pd.DataFrame], k: int) -> Side:
    runs = _sorted_by_seed(choice.group.finished)
    parts = [frames[r.info.run_id] for r in runs]
    prob_columns = [c for c in parts[0].columns if c.startswith(names.PROB_PREFIX)]
    pred = np.stack([p[names.PRED_PREDICTED].to_numpy(np.int64) for p in parts])
    true = parts[0][names.PRED_LABEL].to_numpy(np.int64)
    return Side(
        choice=choice,
        seeds=[r.data.params.get(SEED_PARAM, "") for r in runs],
        run_ids=[r.info.run_id for r in runs],
        pred=pred,
        probs=np.stack([p[prob_columns].to_numpy(float) for p in parts]),
        confusions=np.stack([confusion(true, row, k) for row in pred]),
    )


TESTING = names.DATASET_CONTEXTS["test"]


def check_same_test_data(runs: list[Run]) -> None:
    """Paired statistics pool only runs tested on the same rows: equal test-data digests
    (runs logged before jobs logged their data have none; their predictions are checked)."""
    digests = {r.info.run_id: logged_digests(r).get(TESTING) for r in runs}
    known = {rid: d for rid, d in digests.items() if d}
    if len({frozenset(d) for d in known.values()}) > 1:
        shown = ", ".join(f"{rid[:8]}: {'/'.join(sorted(d))}" for rid, d in known.items())
        raise TrackingError(
            f"the compared runs were tested on different test data (digests {shown}); paired "
            "statistics pool only runs whose test-data digests are equal."
        )


def compare_pair(
    client: MlflowClient, pair: tuple[Choice, Choice], label_names: list[str], cfg: CompareConfig
) -> Comparison:
    """Read both configurations' test predictions and compute the paired statistics."""
    k = len(label_names)
    runs = [r for choice in pair for r in choice.group.finished]
    check_same_test_data(runs)
    with tempfile.TemporaryDirectory() as tmp:
        frames = {r.info.run_id: _test_predictions(client, r.info.run_id, Path(tmp)) for r in runs}
    reference = frames[runs[0].info.run_id]
    for run in runs[1:]:
        frame = frames[run.info.run_id]
        same = frame[names.PRED_ROW].equals(reference[names.PRED_ROW]) and frame[
            names.PRED_LABEL
        ].equals(reference[names.PRED_LABEL])
        if not same:
            raise TrackingError(
                f"runs {runs[0].info.run_id} and {run.info.run_id} were tested on different "
                "examples (data.* differ): paired statistics need the same test set."
            )
    a, b = (_side(choice, frames, k) for choice in pair)
    true = reference[names.PRED_LABEL].to_numpy(np.int64)
    rng = np.random.default_rng(cfg.bootstrap_seed)
    examples = stats.draw_examples(rng, len(true), cfg.bootstrap_resamples)
    hierarchical = len(a.run_ids) > 1 or len(b.run_ids) > 1
    runs_a = stats.draw_runs(rng, len(a.run_ids), cfg.bootstrap_resamples) if hierarchical else None
    runs_b = stats.draw_runs(rng, len(b.run_ids), cfg.bootstrap_resamples) if hierarchical else None
    intervals = stats.paired_difference(
        true, a.pred, b.pred, k, examples, runs_a, runs_b, cfg.confidence
    )
    covers = (
        "seeds and test examples: a hierarchical bootstrap redraws each configuration's runs, "
        "then the test examples, shared by both"
        if hierarchical
        else "test examples only: one run per configuration, seed-to-seed variation is not in it"
    )
    mcnemar = [
        (seed_a, seed_b, stats.mcnemar_exact(pa == true, pb == true))
        for seed_a, seed_b, pa, pb in zip(a.seeds, b.seeds, a.pred, b.pred, strict=False)
    ]
    return Comparison(
        a=a,
        b=b,
        label_names=label_names,
        rows=reference[names.PRED_ROW].to_numpy(),
        texts=list(reference[names.PRED_TEXT]),
        true=true,
        intervals=intervals,
        mcnemar=mcnemar,
        level=cfg.confidence,
        resamples=cfg.bootstrap_resamples,
        covers=covers,
    )
