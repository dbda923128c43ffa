"""What a search sweep learned, from its Optuna study (hparams_search=optuna): the optimisation
history, Optuna's hyperparameter importances, a slice plot of each parameter, the best trial's
parameters, and the expected best validation score against the number of trials (the estimator
of compare.stats). Drawn with seaborn: Optuna's own figures need plotly."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from mlflow.entities import Run

from emotion_lab.compare.stats import expected_max
from emotion_lab.errors import TrackingError, one_line
from emotion_lab.search.study import OBJECTIVE_ATTR
from emotion_lab.store import names

log = logging.getLogger(__name__)

HISTORY_PNG, HISTORY_CSV = "search_history.png", "search_trials.csv"
IMPORTANCE_PNG, IMPORTANCE_CSV = "search_importances.png", "search_importances.csv"
SLICES_PNG, BEST_JSON = "search_slices.png", "search_best_params.json"
EXPECTED_PNG, EXPECTED_CSV = "search_expected_best.png", "search_expected_best.csv"
SEARCH_MD = "search.md"


def load_study(parent: Run, storage: str | None):  # -> optuna.Study
    import optuna

    from emotion_lab.search.study import open_storage

    url = storage or parent.data.tags[names.SEARCH_STORAGE_TAG]
    name = parent.data.tags[names.SEARCH_STUDY_TAG]
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError as e:
        raise TrackingError(
            f"the search's study {name!r} is not in the Optuna storage {url}: give its storage "
            "with search_storage=..."
        ) from e


def trials_frame(study) -> pd.DataFrame:  # study: optuna.Study
    """One row per trial: number, state, value (a pruned trial's last reported score), the
    epochs it reported, and its parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        reported = t.intermediate_values
        value = t.value if t.value is not None else (reported[max(reported)] if reported else None)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": value,
                "epochs": len(reported),
                **t.params,
            }
        )
    return pd.DataFrame(rows)


def _history_figure(trials: pd.DataFrame, minimize: bool, objective: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.scatterplot(data=trials, x="trial", y="value", hue="state", style="state", ax=ax, s=60)
    done = trials[trials.state == "COMPLETE"].sort_values("trial")
    best = done.value.cummin() if minimize else done.value.cummax()
    ax.step(done.trial, best, where="post", color="black", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial", ylabel=objective, title="Optimisation history (pruned: last epoch)")
    ax.legend(fontsize=8)
    return fig


def _slices_figure(trials: pd.DataFrame, params: list[str], study, objective: str) -> plt.Figure:
    from optuna.distributions import FloatDistribution, IntDistribution

    done = trials[trials.state == "COMPLETE"]
    dists = {k: v for t in study.get_trials(deepcopy=False) for k, v in t.distributions.items()}
    fig, axes = plt.subplots(1, len(params), figsize=(3.5 * len(params), 3.5), squeeze=False)
    for ax, key in zip(axes[0], params, strict=True):
        dist = dists.get(key)
        numeric = isinstance(dist, FloatDistribution | IntDistribution)
        x = done[key] if numeric else done[key].astype(str)
        sns.scatterplot(x=x, y=done.value, hue=done.trial, palette="viridis", ax=ax, legend=False)
        if numeric and dist.log:
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel=objective)
    fig.suptitle("Slices: each completed trial's value against each parameter (colour: trial)")
    fig.tight_layout()
    return fig


def _importances(study) -> pd.DataFrame:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = optuna.importance.get_param_importances(study)
    return pd.DataFrame({"param": list(found), "importance": list(found.values())})


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def search_files(parent: Run, out: Path, storage: str | None) -> list[Path]:
    """The search's figures and tables in ``out``; none for a sweep that is not a search."""
    if names.SEARCH_STUDY_TAG not in parent.data.tags:
        return []
    import optuna

    study = load_study(parent, storage)
    minimize = study.direction == optuna.study.StudyDirection.MINIMIZE
    objective = study.user_attrs.get(OBJECTIVE_ATTR, "objective")
    trials = trials_frame(study)
    params = [c for c in trials.columns if c not in ("trial", "state", "value", "epochs")]
    out.mkdir(parents=True, exist_ok=True)
    trials.to_csv(out / HISTORY_CSV, index=False)
    files = [
        out / HISTORY_CSV,
        _save(_history_figure(trials, minimize, objective), out / HISTORY_PNG),
    ]
    lines = [
        f"# Search: study {study.study_name}",
        "",
        f"Objective: {objective} ({study.direction.name.lower()}).",
    ]
    counts = trials.state.value_counts().to_dict()
    lines += ["", "Trials: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items()) + "."]
    done = trials[trials.state == "COMPLETE"]
    if not done.empty:
        best = study.best_trial
        (out / BEST_JSON).write_text(
            json.dumps({"trial": best.number, "value": best.value, "params": best.params}, indent=2)
        )
        files.append(out / BEST_JSON)
        params_text = ", ".join(f"{k}={v}" for k, v in best.params.items())
        lines += [
            "",
            f"Best trial {best.number}: {objective} = {best.value:.4f} with {params_text}.",
        ]
        files.append(_save(_slices_figure(trials, params, study, objective), out / SLICES_PNG))
        # The expected best of n trials drawn from the completed ones (for a loss, the lowest).
        sign = -1.0 if minimize else 1.0
        mean, std = expected_max(sign * done.value.to_numpy(float))
        curve = pd.DataFrame(
            {"trials": np.arange(1, len(done) + 1), "expected_best": sign * mean, "std": std}
        )
        curve.to_csv(out / EXPECTED_CSV, index=False)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(curve.trials, curve.expected_best, marker="o")
        ax.fill_between(
            curve.trials, curve.expected_best - std, curve.expected_best + std, alpha=0.2
        )
        ax.set(
            xlabel="trials",
            ylabel=f"expected best {objective}",
            title="Expected best of n completed trials (± std)",
        )
        files += [out / EXPECTED_CSV, _save(fig, out / EXPECTED_PNG)]
    try:
        importances = _importances(study)
    except Exception as e:  # too few completed trials, or a single value per parameter
        lines += ["", f"No hyperparameter importances: {one_line(e)}"]
    else:
        importances.to_csv(out / IMPORTANCE_CSV, index=False)
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * len(importances)))
        sns.barplot(data=importances, x="importance", y="param", ax=ax, color="tab:blue")
        ax.set(title="Hyperparameter importances (Optuna)", xlabel="importance", ylabel="")
        files += [out / IMPORTANCE_CSV, _save(fig, out / IMPORTANCE_PNG)]
        lines += [
            "",
            "Importances (Optuna's default evaluator): "
            + ", ".join(f"{r.param} {r.importance:.2f}" for r in importances.itertuples())
            + ".",
        ]
    lines += [""] + [f"![{p.name}]({p.name})" for p in files if p.suffix == ".png"]
    (out / SEARCH_MD).write_text("\n".join(lines) + "\n")
    return [out / SEARCH_MD, *files]
