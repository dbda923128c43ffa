"""Seaborn figures of a sweep: accuracy per configuration, validation and training curves, the
confusion difference of two configurations, expected best accuracy under a budget."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from emotion_lab.store import names

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


def accuracy_figure(table: pd.DataFrame, keys: list[str], seeds: bool, title: str) -> Figure:
    """Grouped bars: colour = first configuration key, x = the other keys together. With
    ``seeds`` each bar is the mean over a configuration's seeds with a standard-deviation error
    bar, and every run is a point."""
    data = table.copy()
    hue = keys[0] if keys else None
    rest = keys[1:]
    if rest:
        data["x"] = data[rest].astype(str).agg(" ".join, axis=1)
        x_label = " ".join(rest)
    else:
        data["x"] = data[hue] if hue else data["run"]
        x_label = hue or "run"
    long = data.melt(
        id_vars=["x", *([hue] if hue else [])],
        value_vars=[names.VAL_ACCURACY, names.TEST_ACCURACY],
        var_name="split",
        value_name="accuracy",
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, split, name in zip(
        axes,
        (names.VAL_ACCURACY, names.TEST_ACCURACY),
        ("validation (best epoch)", "test"),
        strict=True,
    ):
        part = long[long["split"] == split]
        if part["accuracy"].isna().all():
            _no_data(ax, "accuracy")
            continue
        placement = {
            "x": "x",
            "y": "accuracy",
            "hue": hue if rest else None,
            "order": _order(data["x"]),
            "hue_order": _order(data[hue]) if hue and rest else None,
            "ax": ax,
        }
        sns.barplot(
            part,
            **placement,
            palette="deep" if rest else None,
            errorbar="sd" if seeds else None,
            capsize=0.15 if seeds else 0,
            alpha=0.8 if seeds else 1,
        )
        for container in ax.containers:
            ax.bar_label(container, fmt="%.3f", padding=2, fontsize=8)
        if seeds:
            sns.stripplot(part, **placement, dodge=bool(rest), color="black", size=4, legend=False)
        ax.set(title=name, xlabel=x_label, ylabel="accuracy", ylim=(0, 1.05))
        if rest:
            ax.legend(title=hue, loc="upper left")
    failed = table[table.status != "FINISHED"]
    if not failed.empty:
        labels = run_labels(failed, keys)
        lines = [f"job {r.job} {r.status}: {labels[r.run_id]}" for _, r in failed.iterrows()]
        fig.text(0.01, 0.01, "; ".join(lines), fontsize=8, color="firebrick")
    if seeds:
        title += " (bars: mean over seeds, error bars: ± 1 std, points: runs)"
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 if not failed.empty else 0, 1, 1))
    return fig


def confusion_difference_figure(
    difference: np.ndarray, label_names: list[str], a: str, b: str
) -> Figure:
    """Mean test confusion counts of a minus b: on the diagonal, more right answers in blue;
    off it, more of that mistake in red."""
    fig, ax = plt.subplots(figsize=(7.5, 6))
    limit = max(float(np.abs(difference).max()), 1e-9)
    sns.heatmap(
        # Diagonal sign flipped so that blue always reads "a does better".
        np.where(np.eye(len(label_names), dtype=bool), -difference, difference),
        annot=difference,
        fmt=".1f",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        xticklabels=label_names,
        yticklabels=label_names,
        cbar_kws={"label": "blue: a does better, red: a does worse"},
        ax=ax,
    )
    ax.set(xlabel="predicted", ylabel="true")
    fig.suptitle(f"test confusion counts, a - b\na: {a}\nb: {b}", fontsize=10)
    fig.tight_layout()
    return fig


def expected_max_figure(curves: pd.DataFrame, key: str, title: str) -> Figure:
    """Expected best validation accuracy against the number of runs tried, ± 1 std band."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if curves.empty:
        _no_data(ax, "validation accuracy")
    for value, part in curves.groupby(key, sort=False):
        line = ax.plot(part["budget"], part["expected_max"], marker="o", label=f"{key}={value}")
        ax.fill_between(
            part["budget"],
            part["expected_max"] - part["std"],
            part["expected_max"] + part["std"],
            color=line[0].get_color(),
            alpha=0.2,
        )
    ax.set(
        xlabel="runs tried (configurations x seeds, drawn at random)",
        ylabel="expected best validation accuracy",
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    if not curves.empty:
        ax.legend(loc="lower right")
    fig.suptitle(f"{title}: expected best validation accuracy under a budget (± 1 std)")
    fig.tight_layout()
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
    keys = list(names.MONITORS)
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
