"""Seaborn figures of attention: one head on one text, all heads of a layer, head statistics."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from emotion_lab.attention.stats import DESCRIPTIONS

SHARE_CMAP = "rocket_r"
ENTROPY_CMAP = "mako_r"
DIFF_CMAP = "vlag"


def _token_heatmap(
    ax: Axes, weights: np.ndarray, labels: list[str], vmax: float, cbar: bool
) -> None:
    sns.heatmap(
        weights,
        vmin=0,
        vmax=vmax,
        cmap=SHARE_CMAP,
        square=True,
        xticklabels=labels,
        yticklabels=labels,
        cbar=cbar,
        cbar_kws={"label": "attention weight", "shrink": 0.7} if cbar else None,
        ax=ax,
    )
    size = max(5.0, 10 - 0.15 * len(labels))
    ax.tick_params(axis="x", labelrotation=90, labelsize=size)
    ax.tick_params(axis="y", labelrotation=0, labelsize=size)


def attention_map_figure(weights: np.ndarray, labels: list[str], title: str) -> Figure:
    """[query, key] weights of one head: rows are the attending tokens; the colour scale ends at
    the largest weight, so that a flat head still shows its pattern."""
    side = max(5.0, 0.32 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    _token_heatmap(ax, weights, labels, float(weights.max()), cbar=True)
    ax.set_xlabel("attended token (key)")
    ax.set_ylabel("attending token (query)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def heads_grid_figure(weights: np.ndarray, labels: list[str], layer: int, title: str) -> Figure:
    """[head, query, key] weights of every head of one layer, on one colour scale."""
    heads = weights.shape[0]
    cols = min(4, heads)
    rows = math.ceil(heads / cols)
    side = max(3.0, 0.2 * len(labels) + 1.5)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * side, rows * side), squeeze=False, layout="constrained"
    )
    vmax = float(weights.max())
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        _token_heatmap(ax, weights[h], labels, vmax, cbar=False)
        ax.set_title(f"layer {layer} head {h}", fontsize=10)
    fig.suptitle(f"{title}\n(colour scale 0 to {vmax:.2f})")
    return fig


def _grid_heatmap(  # noqa: PLR0913 - the colour scale (vmin, vmax, cmap) is shared by a figure's panels
    ax: Axes, grid: np.ndarray, stat: str, title: str, vmin: float, vmax: float, cmap: str
) -> None:
    layers, heads = grid.shape
    sns.heatmap(
        grid,
        annot=heads <= 16,
        fmt=".2f",
        annot_kws={"fontsize": 7},
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        center=0 if cmap == DIFF_CMAP else None,
        xticklabels=[f"H{h}" for h in range(heads)],
        yticklabels=[f"L{layer}" for layer in range(layers)],
        cbar_kws={"label": DESCRIPTIONS[stat] if cmap != DIFF_CMAP else "difference"},
        ax=ax,
    )
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title, fontsize=10)


def _range(stat: str, *grids: np.ndarray) -> tuple[float, float, str]:
    if stat == "entropy":
        return 0.0, float(max(g.max() for g in grids)), ENTROPY_CMAP
    return 0.0, 1.0, SHARE_CMAP


def head_stats_figure(grids: dict[str, np.ndarray], title: str) -> Figure:
    """One layer x head heatmap per statistic, stacked."""
    layers, heads = next(iter(grids.values())).shape
    fig, axes = plt.subplots(
        len(grids),
        1,
        figsize=(0.55 * heads + 2.5, len(grids) * (0.4 * layers + 1.2)),
        squeeze=False,
        layout="constrained",
    )
    for ax, (stat, grid) in zip(axes.flat, grids.items(), strict=True):
        vmin, vmax, cmap = _range(stat, grid)
        _grid_heatmap(ax, grid, stat, DESCRIPTIONS[stat], vmin, vmax, cmap)
    fig.suptitle(title)
    return fig


def comparison_figure(stat: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> Figure:
    """Two models side by side on one statistic, and their difference (second - first)."""
    layers, heads = a.shape
    fig, axes = plt.subplots(
        1, 3, figsize=(3 * (0.55 * heads + 2.2), 0.45 * layers + 1.8), layout="constrained"
    )
    vmin, vmax, cmap = _range(stat, a, b)
    _grid_heatmap(axes[0], a, stat, names[0], vmin, vmax, cmap)
    _grid_heatmap(axes[1], b, stat, names[1], vmin, vmax, cmap)
    diff = b - a
    bound = max(float(np.abs(diff).max()), 1e-6)
    _grid_heatmap(axes[2], diff, stat, "difference (right - left)", -bound, bound, DIFF_CMAP)
    fig.suptitle(DESCRIPTIONS[stat])
    return fig


def top_words_figure(words: pd.DataFrame, title: str) -> Figure:
    """Words by attention lift: 1 = what uniform attention would give them."""
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(words) + 1.5))
    sns.barplot(data=words, x="lift", y="word", color=sns.color_palette()[0], ax=ax)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    for i, count in enumerate(words["count"]):
        ax.text(
            0.02,
            i,
            f"n={count}",
            va="center",
            fontsize=7,
            color="white",
            transform=ax.get_yaxis_transform(),
        )
    ax.set_xlabel("attention received / uniform share (first token excluded)")
    ax.set_ylabel("")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
