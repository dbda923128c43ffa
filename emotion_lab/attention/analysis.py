"""One model's analysis and a two-model comparison, written as files into a folder."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_lab.attention import bertviz_export, plots, report
from emotion_lab.attention.extract import (
    LoadedModel,
    attention_batches,
    forward_attention,
    predicted_label,
)
from emotion_lab.attention.stats import HeadStats, HeadStatsAccumulator
from emotion_lab.attention.tokens import EncodedText
from emotion_lab.errors import ConfigError, ModelError
from emotion_lab.reports import save_figure

log = logging.getLogger(__name__)


def head_statistics(loaded: LoadedModel, encoded: list[EncodedText], batch_size: int) -> HeadStats:
    layers, heads = loaded.shape
    accumulator = HeadStatsAccumulator(layers, heads, loaded.causal)
    for batch in attention_batches(loaded, encoded, batch_size):
        accumulator.update(batch, [encoded[i] for i in batch.indices])
    return accumulator.result()


def _check_layer_head(loaded: LoadedModel, layer: int, head: int) -> int:
    layers, heads = loaded.shape
    if not -layers <= layer < layers:
        raise ConfigError(f"layer={layer}: {loaded.name} has layers 0..{layers - 1} (or -1).")
    if not 0 <= head < heads:
        raise ConfigError(f"head={head}: {loaded.name} has heads 0..{heads - 1}.")
    return layer % layers


def draw_example(  # noqa: PLR0913 - each is its own attention.* option, passed by keyword
    loaded: LoadedModel,
    example: EncodedText,
    *,
    layer: int,
    head: int,
    out_dir: Path,
    bertviz: bool,
) -> list[str]:
    """One head's map and the grid of its layer for one text (+ bertviz views); file names."""
    layer = _check_layer_head(loaded, layer, head)
    attentions = forward_attention(loaded, [example])[0][:, 0]  # [layer, head, query, key]
    weights = attentions.numpy()
    labels = example.labels
    text = example.text
    short = text if len(text) <= 70 else text[:67] + "..."
    names = [f"attention_L{layer}_H{head}.png", f"heads_L{layer}.png"]
    save_figure(
        plots.attention_map_figure(
            weights[layer, head], labels, f"{loaded.name}\nlayer {layer} head {head}: {short}"
        ),
        out_dir / names[0],
    )
    save_figure(
        plots.heads_grid_figure(weights[layer], labels, layer, f"{loaded.name}: {short}"),
        out_dir / names[1],
    )
    if bertviz and bertviz_export.available():
        for name, html in bertviz_export.views(attentions, labels).items():
            (out_dir / name).write_text(html)
            names.append(name)
    return names


def example_prediction(loaded: LoadedModel, example: EncodedText) -> str:
    """A trained classifier's classes, by name, and what it predicts for the drawn text."""
    label, prob = predicted_label(loaded, example)
    classes = ", ".join(loaded.model.config.id2label[i] for i in range(loaded.model.num_labels))
    return f"Classes: {classes}. The drawn text {example.text!r} is predicted {label} ({prob:.2f})."


def write_model_analysis(  # noqa: PLR0913 - the word-table options and the optional verdict, by keyword
    name: str,
    stats: HeadStats,
    out_dir: Path,
    *,
    top_words: int,
    min_count: int,
    prediction: str | None = None,
) -> str:
    """Tables, figures and the summary of one model's statistics; returns the summary.
    ``prediction``: a trained classifier's line on the drawn text, placed under the title."""
    out_dir.mkdir(parents=True, exist_ok=True)
    roles = report.head_roles(stats)
    roles.to_csv(out_dir / "head_stats.csv", index=False)
    stats.words.to_csv(out_dir / "words.csv", index=False)
    summary = {
        "model": name,
        "num_texts": stats.num_texts,
        "num_queries": stats.num_queries,
        "causal": stats.causal,
        "sink_share": stats.sink_share,
        "padding_mass": stats.padding_mass,
        "first_tokens": dict(stats.first_tokens.most_common(10)),
        "heads": roles.to_dict(orient="records"),
        "top_words": stats.top_words(top_words, min_count).to_dict(orient="records"),
    }
    (out_dir / "head_stats.json").write_text(json.dumps(summary, indent=2))
    grids = {stat: stats.grid(stat) for stat in stats.panels()}
    save_figure(
        plots.head_stats_figure(grids, f"{name}: head statistics"), out_dir / "head_stats.png"
    )
    top = stats.top_words(top_words, min_count)
    if len(top):
        save_figure(
            plots.top_words_figure(top, f"{name}: most attended words"),
            out_dir / "top_words.png",
        )
    text = report.model_summary(name, stats, top_words, min_count)
    if prediction:
        title, rest = text.split("\n\n", 1)
        text = f"{title}\n\n{prediction}\n\n{rest}"
    (out_dir / "summary.md").write_text(text)
    return text


def matched_stats(b: HeadStats, matched: np.ndarray) -> HeadStats:
    """``b`` with its heads renumbered so that head h of layer l is the one matched to the
    other model's head h (``matching.match_heads``): per-head differences then compare
    counterparts, not heads that happen to share an index."""
    layers, heads = matched.shape
    order = (np.arange(layers)[:, None] * heads + matched).ravel()
    table = b.table.sort_values(["layer", "head"]).iloc[order].copy()
    table["head"] = np.tile(np.arange(heads), layers)
    return dataclasses.replace(b, table=table.reset_index(drop=True))


def write_comparison(  # noqa: PLR0913 - two models' statistics plus the word-table options, by keyword
    names: tuple[str, str],
    a: HeadStats,
    b: HeadStats,
    out_dir: Path,
    *,
    top_words: int,
    min_count: int,
    matched: np.ndarray | None = None,
) -> str:
    """Side-by-side and difference heatmaps, a merged table and the report; returns it.
    With ``matched``, b's heads are first renumbered to their matched counterparts in a."""
    if a.shape != b.shape:
        raise ModelError(
            f"cannot compare {names[0]} ({a.shape[0]}x{a.shape[1]} layers x heads) with "
            f"{names[1]} ({b.shape[0]}x{b.shape[1]}): head by head needs the same shape."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if matched is not None:
        b = matched_stats(b, matched)
    figures = []
    for stat in a.panels():
        figures.append(f"compare_{stat}.png")
        shown = names if matched is None else (names[0], f"{names[1]} (heads matched)")
        fig = plots.comparison_figure(stat, a.grid(stat), b.grid(stat), shown)
        save_figure(fig, out_dir / figures[-1])
    merged = pd.merge(a.table, b.table, on=["layer", "head"], suffixes=("_a", "_b"))
    for stat in a.panels():
        merged[f"{stat}_diff"] = merged[f"{stat}_b"] - merged[f"{stat}_a"]
    if matched is not None:
        merged.insert(2, "head_b", matched.ravel())
    merged.to_csv(out_dir / "comparison.csv", index=False)
    text = report.comparison_report(
        names, a, b, top_words=top_words, min_count=min_count, figures=figures
    )
    if matched is not None:
        text += (
            f"\nHeads of {names[1]} are matched to those of {names[0]} per layer (Hungarian "
            "algorithm on the Jensen-Shannon distance of their attention over the same texts) "
            "before any per-head difference; `head_b` in comparison.csv is the matched head.\n"
        )
    (out_dir / "comparison.md").write_text(text)
    return text
