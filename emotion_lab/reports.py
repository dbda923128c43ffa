"""What every written report is made of: markdown tables and saved figures, rendered one way.

``markdown_table`` takes cells already formatted as text (each report formats its own numbers);
``padded`` aligns the columns, so that the same text reads well in a terminal. ``save_figure``
writes a PNG at one resolution, cropped to what is drawn, and frees the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_DPI = 120


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], padded: bool = False
) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(header)]
    if not padded:
        widths = [0] * len(header)

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2 if padded else 3) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` and close it (pyplot keeps every open figure in memory)."""
    import matplotlib.pyplot as plt  # imported by the commands that draw, not at start-up

    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    return path
