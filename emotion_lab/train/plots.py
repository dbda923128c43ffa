"""Figures, drawn with seaborn on a headless backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure


def confusion_matrix_figure(confusion: np.ndarray, label_names: list[str], title: str) -> Figure:
    """Counts annotated, colour by share of each true class, so rare classes stay readable."""
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    fig, ax = plt.subplots(figsize=(7, 6))
    sns.heatmap(
        share,
        annot=confusion,
        fmt="d",
        cmap="Blues",
        vmin=0,
        vmax=1,
        xticklabels=label_names,
        yticklabels=label_names,
        cbar_kws={"label": "share of true class"},
        ax=ax,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig
