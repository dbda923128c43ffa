"""Seaborn figures of a sweep: accuracy per swept setting, validation and training curves."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# Learning rates are strings here on purpose (categories); matplotlib would log that at INFO.
logging.getLogger("matplotlib.category").setLevel(logging.WARNING)


def run_labels(table: pd.DataFrame, swept: list[str]) -> dict[str, str]:
    """run_id -> ``key=value ...`` of the swept keys (the run name when nothing was swept)."""
    return {
        row.run_id: " ".join(f"{k}={row[k]}" for k in swept) if swept else str(row.run)
        for _, row in table.iterrows()
    }


def _order(values: pd.Series) -> list[str]:
    """Numeric order when every value is a number (learning rates), else first-seen order."""
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} (no run got this far)", ha="center", va="center")
    ax.set_axis_off()


def accuracy_figure(table: pd.DataFrame, swept: list[str], title: str) -> Figure:
    """Grouped bars: colour = first swept key, x = the other swept keys together."""
    data = table.copy()
    hue = swept[0] if swept else None
    rest = swept[1:]
    if rest:
        data["x"] = data[rest].astype(str).agg(" ".join, axis=1)
        x_label = " ".join(rest)
    else:
        data["x"] = data[hue] if hue else data["run"]
        x_label = hue or "run"
    long = data.melt(
        id_vars=["x", *([hue] if hue else [])],
        value_vars=["val_accuracy", "test_accuracy"],
        var_name="split",
        value_name="accuracy",
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, split, name in zip(
        axes, ("val_accuracy", "test_accuracy"), ("validation (best epoch)", "test"), strict=True
    ):
        part = long[long["split"] == split]
        if part["accuracy"].isna().all():
            _no_data(ax, "accuracy")
            continue
        sns.barplot(
            part,
            x="x",
            y="accuracy",
            hue=hue if rest else None,
            order=_order(data["x"]),
            hue_order=_order(data[hue]) if hue and rest else None,
            palette="deep" if rest else None,
            errorbar=None,
            ax=ax,
        )
        for container in ax.containers:
            ax.bar_label(container, fmt="%.3f", padding=2, fontsize=8)
        ax.set(title=name, xlabel=x_label, ylabel="accuracy", ylim=(0, 1.05))
        if rest:
            ax.legend(title=hue, loc="upper left")
    failed = table[table.status != "FINISHED"]
    if not failed.empty:
        labels = run_labels(failed, swept)
        lines = [f"job {r.job} {r.status}: {labels[r.run_id]}" for _, r in failed.iterrows()]
        fig.text(0.01, 0.01, "; ".join(lines), fontsize=8, color="firebrick")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 if not failed.empty else 0, 1, 1))
    return fig


def _curves(history: pd.DataFrame, labels: dict[str, str], keys: list[str], x: str) -> pd.DataFrame:
    """Wide per-step frame of ``keys`` (and ``epoch`` when x is epoch), one row per run and step."""
    part = history[history["key"].isin([*keys, "epoch"]) & history["run_id"].isin(labels)]
    if part.empty:
        return pd.DataFrame(columns=["run_id", "step", "run", x, *keys])
    wide = part.pivot_table(index=["run_id", "step"], columns="key", values="value").reset_index()
    wide["run"] = wide["run_id"].map(labels)
    wanted = [x, *keys]
    return wide.dropna(subset=wanted) if set(wanted) <= set(wide.columns) else wide.iloc[0:0]


def validation_figure(history: pd.DataFrame, labels: dict[str, str], title: str) -> Figure:
    keys = ["val_accuracy", "val_macro_f1", "val_loss"]
    data = _curves(history, labels, keys, "epoch")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key in zip(axes, keys, strict=True):
        if data.empty:
            _no_data(ax, key)
            continue
        sns.lineplot(
            data,
            x="epoch",
            y=key,
            hue="run",
            hue_order=list(dict.fromkeys(labels.values())),
            marker="o",
            ax=ax,
            legend=ax is axes[-1],
        )
        ax.set(title=key, xlabel="epoch", ylabel=key)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if not data.empty:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), title="run")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def train_loss_figure(history: pd.DataFrame, labels: dict[str, str], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    data = _curves(history, labels, ["train_loss"], "step")
    if data.empty:
        _no_data(ax, "train_loss")
    else:
        sns.lineplot(
            data,
            x="step",
            y="train_loss",
            hue="run",
            hue_order=list(dict.fromkeys(labels.values())),
            ax=ax,
        )
        ax.set(xlabel="optimizer step", ylabel="train_loss (mean over the logging window)")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title="run")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
