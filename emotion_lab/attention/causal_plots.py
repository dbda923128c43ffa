"""Figures of the causal analysis: head importance, faithfulness per method, words per class,
example texts coloured by attribution, and two models' per-layer distributions."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from emotion_lab.attention.attributions import TITLES


def _grid(table: pd.DataFrame, column: str) -> np.ndarray:
    return table.pivot(index="layer", columns="head", values=column).to_numpy()


def importance_figure(heads: pd.DataFrame, layers: pd.DataFrame, title: str) -> Figure:
    """Ablation Δloss and gradient importance per head; whole-layer ablation per layer."""
    n_layers, n_heads = int(heads.layer.max()) + 1, int(heads["head"].max()) + 1
    fig, axes = plt.subplots(
        1, 3, figsize=(2 * (0.5 * n_heads + 2) + 4, 0.45 * n_layers + 2), layout="constrained"
    )
    annot = n_heads <= 16
    ticks = {
        "xticklabels": [f"H{h}" for h in range(n_heads)],
        "yticklabels": [f"L{lay}" for lay in range(n_layers)],
    }
    dloss = _grid(heads, "dloss")
    bound = max(float(np.abs(dloss).max()), 1e-9)
    sns.heatmap(
        dloss,
        ax=axes[0],
        cmap="vlag",
        center=0,
        vmin=-bound,
        vmax=bound,
        annot=annot,
        fmt=".1g",
        annot_kws={"fontsize": 6},
        cbar_kws={"label": "Δ loss"},
        **ticks,
    )
    axes[0].set_title("ablation: Δ loss (* = interval excludes 0)", fontsize=9)
    for _, row in heads[heads.matters].iterrows():
        axes[0].text(row["head"] + 0.85, row.layer + 0.3, "*", fontsize=9, color="black")
    sns.heatmap(
        _grid(heads, "gradient"),
        ax=axes[1],
        cmap="rocket_r",
        vmin=0,
        annot=annot,
        fmt=".2f",
        annot_kws={"fontsize": 6},
        cbar_kws={"label": "I_h / layer norm"},
        **ticks,
    )
    axes[1].set_title("gradient importance (normalised per layer)", fontsize=9)
    err = np.stack([layers.dacc - layers.dacc_low, layers.dacc_high - layers.dacc])
    axes[2].barh([f"L{lay}" for lay in layers.layer], layers.dacc, xerr=err, color="#4c72b0")
    axes[2].invert_yaxis()
    axes[2].axvline(0, color="grey", linewidth=1)
    axes[2].set_xlabel("Δ accuracy (points), whole layer's attention removed")
    axes[2].set_title("layer ablation", fontsize=9)
    fig.suptitle(title)
    return fig


def faithfulness_figure(table: pd.DataFrame, title: str) -> Figure:
    """Comprehensiveness (higher = more faithful) and sufficiency (lower) per method, with
    95% intervals."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(table) + 1.8), layout="constrained")
    labels = [TITLES.get(m, m) for m in table.method]
    for ax, column in zip(axes, ("comprehensiveness", "sufficiency"), strict=True):
        err = np.stack(
            [table[column] - table[f"{column}_low"], table[f"{column}_high"] - table[column]]
        )
        colours = ["#999999" if m == "random" else "#4c72b0" for m in table.method]
        ax.barh(labels, table[column], xerr=err, color=colours)
        ax.invert_yaxis()
        ax.axvline(0, color="grey", linewidth=1)
        better = "higher" if column == "comprehensiveness" else "lower"
        ax.set_title(f"{column} AOPC ({better} = more faithful)", fontsize=9)
    fig.suptitle(title)
    return fig


def words_figure(table: pd.DataFrame, group: str, n: int, title: str) -> Figure | None:
    part = table[(table.group == group) & (table["rank"] <= n)]
    classes = sorted(part["class"].unique())
    if not classes:
        return None
    cols = min(3, len(classes))
    rows = math.ceil(len(classes) / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(4 * cols, 0.28 * n * rows + 1.5 * rows),
        squeeze=False,
        layout="constrained",
    )
    for ax, cls in zip(axes.flat, classes, strict=False):
        words = part[part["class"] == cls].sort_values("rank")
        err = np.stack([words.score - words.score_low, words.score_high - words.score])
        ax.barh(
            [f"{w} (n={c})" for w, c in zip(words.word, words["count"], strict=True)],
            words.score,
            xerr=err,
            color="#4c72b0",
        )
        ax.invert_yaxis()
        ax.set_title(str(cls), fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(classes) :]:
        ax.axis("off")
    fig.suptitle(title)
    return fig


def examples_figure(examples: list[tuple[str, list[str], np.ndarray]], title: str) -> Figure:
    """Each text's words on a white-to-red (supports the prediction) / blue (against) scale."""
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(examples) + 0.8))
    ax.axis("off")
    cmap = plt.get_cmap("RdBu_r")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for row, (caption, words, scores) in enumerate(examples):
        y = 1 - (row + 0.5) / len(examples)
        bound = max(float(np.abs(scores).max()), 1e-12)
        ax.text(
            0,
            y + 0.35 / len(examples),
            caption,
            fontsize=8,
            color="#444444",
            transform=ax.transAxes,
        )
        x = 0.0
        for word, score in zip(words, scores, strict=True):
            colour = cmap(0.5 + 0.5 * score / bound)
            t = ax.text(
                x,
                y,
                word,
                fontsize=9,
                transform=ax.transAxes,
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5},
            )
            box = t.get_window_extent(renderer).transformed(ax.transAxes.inverted())
            x = box.x1 + 0.008
            if x > 0.95:  # the rest of a long text would run off the figure
                ax.text(x, y, "…", fontsize=9, transform=ax.transAxes)
                break
    fig.suptitle(title, fontsize=10)
    return fig


def distributions_figure(frames: dict[str, pd.DataFrame], names: tuple[str, str]) -> Figure:
    """Per layer, each model's heads sorted by value (not by index: heads are interchangeable),
    one panel per statistic. ``frames``: statistic -> rows of (model, layer, value)."""
    fig, axes = plt.subplots(
        1, len(frames), figsize=(5 * len(frames), 3.8), squeeze=False, layout="constrained"
    )
    for ax, (stat, frame) in zip(axes.flat, frames.items(), strict=True):
        frame = frame.copy()
        frame["rank"] = frame.groupby(["model", "layer"])["value"].rank(method="first")
        heads = frame["rank"].max()
        frame["x"] = frame.layer + (frame["rank"] - 0.5) / heads * 0.8 - 0.4
        for model, colour in zip(names, ("#dd8452", "#4c72b0"), strict=True):
            part = frame[frame.model == model].sort_values(["layer", "rank"])
            for _, layer_part in part.groupby("layer"):
                ax.plot(
                    layer_part.x,
                    layer_part.value,
                    "-o",
                    markersize=2.5,
                    color=colour,
                    label=model if layer_part.layer.iloc[0] == 0 else None,
                )
        ax.set_xticks(sorted(frame.layer.unique()))
        ax.set_xticklabels([f"L{lay}" for lay in sorted(frame.layer.unique())])
        ax.set_title(f"{stat} (each layer's heads sorted)", fontsize=9)
        ax.legend(fontsize=7)
    return fig
