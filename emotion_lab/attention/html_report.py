"""A self-contained HTML report: figures embedded as data: URIs, tables inline, no script and
no external URL, so it renders offline from the MLflow artifact view or a local file."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f2f2f2; }
img { max-width: 100%; }
.text span { padding: 1px 3px; margin: 1px; border-radius: 3px; display: inline-block; }
.caption { color: #555; font-size: 0.85em; margin-top: 0.8em; }
"""


@dataclass
class Raw:
    """HTML written by this module, inserted as is."""

    markup: str


Block = str | pd.DataFrame | Path | Raw


def coloured_text(words: list[str], scores: np.ndarray) -> Raw:
    """Words on a red (for the prediction) / blue (against) background, by score."""
    bound = max(float(np.abs(scores).max()), 1e-12)
    spans = []
    for word, score in zip(words, scores, strict=True):
        strength = abs(float(score)) / bound
        rgb = (255, int(255 * (1 - strength)), int(255 * (1 - strength)))
        if score < 0:
            rgb = rgb[::-1]
        spans.append(
            f'<span style="background: rgb{rgb}" title="{score:.3g}">{html.escape(word)}</span>'
        )
    return Raw('<div class="text">' + " ".join(spans) + "</div>")


def _block(block: Block) -> str:
    if isinstance(block, Raw):
        return block.markup
    if isinstance(block, pd.DataFrame):
        return block.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
    if isinstance(block, Path):
        data = base64.b64encode(block.read_bytes()).decode()
        return f'<p><img alt="{html.escape(block.name)}" src="data:image/png;base64,{data}"></p>'
    return f"<p>{html.escape(block)}</p>"


def render(title: str, sections: list[tuple[str, list[Block]]]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, blocks in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.extend(_block(b) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def findings_list(lines: list[str]) -> Raw:
    return Raw("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")
