"""Markdown answers from the numbers: head roles, most attended words, where two models differ.

A head gets a role when one pattern takes at least half of its attention on average
(ROLE_SHARE); otherwise it is "broad" when its entropy is close to that of uniform attention
(BROAD_ENTROPY of it), and "mixed" when neither holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import zip_longest

import pandas as pd

from emotion_lab import reports
from emotion_lab.attention.stats import DESCRIPTIONS, STATS, HeadStats

ROLE_SHARE = 0.5
BROAD_ENTROPY = 0.8
ROLES = {"first": "sink", "previous": "previous-token", "self": "self", "next": "next-token"}
ROLE_ORDER = [*ROLES.values(), "broad", "mixed"]
SHARES = [s for s in STATS if s != "entropy"]


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The report's tables: floats to three decimals (``emotion_lab.reports`` renders them)."""
    return reports.markdown_table(header, [[_cell(v) for v in row] for row in rows])


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def head_roles(stats: HeadStats) -> pd.DataFrame:
    """The table with a ``role`` and a ``name`` (L<layer>H<head>) column."""
    table = stats.table.copy()
    shares = table[SHARES]
    strongest = shares.idxmax(axis=1).map(ROLES)
    broad = table["entropy_norm"] >= BROAD_ENTROPY
    table["role"] = strongest.where(shares.max(axis=1) >= ROLE_SHARE, None)
    table["role"] = table["role"].fillna(broad.map({True: "broad", False: "mixed"}))
    table["name"] = "L" + table["layer"].astype(str) + "H" + table["head"].astype(str)
    return table


def heads_by_role(stats: HeadStats) -> dict[str, list[str]]:
    roles = head_roles(stats)
    return {role: list(roles.loc[roles.role == role, "name"]) for role in ROLE_ORDER}


def _sink_sentence(name: str, stats: HeadStats) -> str:
    total = sum(stats.first_tokens.values()) or 1
    common = ", ".join(
        f"`{token}` ({count / total:.0%})" for token, count in stats.first_tokens.most_common(3)
    )
    return (
        f"- **{name}**: {stats.sink_share:.1%} of all attention (mean over layers, heads and "
        f"queries) goes to the first token; first tokens: {common}."
    )


def _sample_line(stats: HeadStats) -> str:
    layers, heads = stats.shape
    kind = "causal" if stats.causal else "bidirectional"
    return (
        f"{stats.num_texts} texts, {stats.num_queries} query tokens (from the second token on), "
        f"{layers} layers x {heads} heads ({kind}). Largest share of a query's attention on "
        f"padding: {stats.padding_mass:.2g}."
    )


def _per_layer_rows(stats: HeadStats, columns: list[str]) -> list[list[object]]:
    per_layer = stats.per_layer()
    return [[f"L{layer}", *(float(row[c]) for c in columns)] for layer, row in per_layer.iterrows()]


def _word_rows(stats: HeadStats, n: int, min_count: int) -> list[list[object]]:
    top = stats.top_words(n, min_count)
    return [[w.word, int(w["count"]), float(w.lift), float(w.share)] for _, w in top.iterrows()]


def model_summary(name: str, stats: HeadStats, top_words: int, min_count: int) -> str:
    roles = heads_by_role(stats)
    columns = ["entropy", "entropy_norm", *stats.panels()[1:]]
    parts = [
        f"# Attention of {name}",
        _sample_line(stats),
        "## Head roles",
        f"A head has a role when that pattern takes >= {ROLE_SHARE:.0%} of its attention; "
        f"broad = entropy >= {BROAD_ENTROPY:.0%} of uniform attention's.",
        markdown_table(
            ["role", "heads", "which"],
            [[r, len(h), " ".join(h)] for r, h in roles.items() if h],
        ),
        f"Where: {_role_layers(stats)}.",
        "## Per layer (mean over heads)",
        markdown_table(["layer", *columns], _per_layer_rows(stats, columns)),
        "## Most attended words (first token excluded)",
        _sink_sentence(name, stats),
        f"Words seen at least {min_count} times, by lift: attention received / what uniform "
        "attention over the visible tokens would give (1 = average).",
        markdown_table(["word", "count", "lift", "share"], _word_rows(stats, top_words, min_count)),
    ]
    return "\n\n".join(parts) + "\n"


def _largest_differences(a: HeadStats, b: HeadStats, n: int = 3) -> list[list[object]]:
    rows = []
    for stat in a.panels():
        diff = (b.table[stat] - a.table[stat]).abs().sort_values(ascending=False).head(n)
        for i in diff.index:
            name = head_name(int(a.table["layer"][i]), int(a.table["head"][i]))
            va, vb = float(a.table[stat][i]), float(b.table[stat][i])
            rows.append([stat, name, va, vb, vb - va])
    return rows


def _layer_differences(a: HeadStats, b: HeadStats) -> pd.Series:
    """Mean absolute difference of the attention shares per layer."""
    diff = (b.table[SHARES] - a.table[SHARES]).abs().mean(axis=1)
    return diff.groupby(a.table.layer).mean()


def _role_layers(stats: HeadStats) -> str:
    """Where each role sits, e.g. "sink in L1 (5), L2 (3); previous-token in L0 (1)"."""
    roles = head_roles(stats)
    parts = []
    for role in ROLE_ORDER[:-2]:
        layers = roles.loc[roles.role == role, "layer"].value_counts().sort_index()
        if len(layers):
            where = ", ".join(f"L{layer} ({n})" for layer, n in layers.items())
            parts.append(f"{role} in {where}")
    return "; ".join(parts) or "no head with a single dominant pattern"


def _top_words_sentence(name: str, stats: HeadStats, min_count: int) -> str:
    top = stats.top_words(10, min_count)
    if not len(top):
        return f"{name}: no word seen {min_count} times"
    lifts = f"lift {top.lift.min():.2f}-{top.lift.max():.2f}"
    return f"{name} ({lifts}): {', '.join(top.word)}"


def _conclusions(names: tuple[str, str], a: HeadStats, b: HeadStats, min_count: int) -> list[str]:
    name_a, name_b = names
    roles_a, roles_b = heads_by_role(a), heads_by_role(b)
    counts = {
        name: ", ".join(f"{len(r[role])} {role}" for role in ROLE_ORDER if r[role])
        for name, r in ((name_a, roles_a), (name_b, roles_b))
    }
    layers = _layer_differences(a, b).sort_values(ascending=False)
    entropy_a, entropy_b = a.table.entropy_norm.mean(), b.table.entropy_norm.mean()
    shared = set(a.top_words(10, min_count).word) & set(b.top_words(10, min_count).word)
    broader = name_b if entropy_b > entropy_a else name_a
    return [
        f"- Heads: **{name_a}** has {counts[name_a]}; **{name_b}** has {counts[name_b]}.",
        f"- Where: {name_a}: {_role_layers(a)}. {name_b}: {_role_layers(b)}.",
        f"- First-token (sink) share: {a.sink_share:.1%} ({name_a}) "
        f"vs {b.sink_share:.1%} ({name_b}).",
        f"- **{broader}** spreads its attention more broadly: mean entropy relative to uniform "
        f"attention (1 = uniform) {entropy_a:.2f} ({name_a}) vs {entropy_b:.2f} ({name_b}).",
        f"- The models differ most in layer {int(layers.index[0])} (mean |difference| of the "
        f"attention shares {layers.iloc[0]:.3f}) and least in layer {int(layers.index[-1])} "
        f"({layers.iloc[-1]:.3f}).",
        f"- Most attended words (first token excluded, 1 = uniform): "
        f"{_top_words_sentence(name_a, a, min_count)}; "
        f"{_top_words_sentence(name_b, b, min_count)}; "
        f"in both top-10 lists: {', '.join(sorted(shared)) or 'none'}.",
    ]


def comparison_report(  # noqa: PLR0913 - two models' statistics plus the word-table options, by keyword
    names: tuple[str, str],
    a: HeadStats,
    b: HeadStats,
    *,
    top_words: int,
    min_count: int,
    figures: Sequence[str],
) -> str:
    """Answers what differs, which words and which layers/heads, for two models of one shape."""
    name_a, name_b = names
    roles_a, roles_b = heads_by_role(a), heads_by_role(b)
    stats_rows = [
        [
            DESCRIPTIONS[s],
            float(a.table[s].mean()),
            float(b.table[s].mean()),
            float(b.table[s].mean() - a.table[s].mean()),
        ]
        for s in ["entropy", "entropy_norm", *a.panels()[1:]]
    ]
    words_a, words_b = _word_rows(a, top_words, min_count), _word_rows(b, top_words, min_count)
    word_rows = [
        [i + 1, *(f"{w[0]} ({w[2]:.2f})" if w else "" for w in pair)]
        for i, pair in enumerate(zip_longest(words_a, words_b))
    ]
    shares = a.panels()[1:]
    layer_columns = [f"{s} {n}" for s in ["entropy_norm", *shares] for n in ("A", "B")]
    layers_a, layers_b = a.per_layer(), b.per_layer()
    layer_rows = [
        [
            f"L{lay}",
            *(
                float(p.loc[lay, s])
                for s in ["entropy_norm", *shares]
                for p in (layers_a, layers_b)
            ),
        ]
        for lay in layers_a.index
    ]
    parts = [
        f"# Attention: {name_a} (A) vs {name_b} (B)",
        "Same texts for both: " + _sample_line(a),
        "## Conclusions",
        "\n".join(_conclusions(names, a, b, min_count)),
        "## 1. What differs between the two models",
        "Means over all heads:",
        markdown_table(["statistic", "A", "B", "B - A"], stats_rows),
        "Heads that differ most, per statistic:",
        markdown_table(["statistic", "head", "A", "B", "B - A"], _largest_differences(a, b)),
        "## 2. Which words the models attend to",
        _sink_sentence(name_a, a) + "\n" + _sink_sentence(name_b, b),
        f"Words seen at least {min_count} times, by lift (attention received / uniform share, "
        "first token excluded):",
        markdown_table(["rank", f"A: {name_a}", f"B: {name_b}"], word_rows),
        "## 3. In which layers and heads",
        markdown_table(
            ["role", "A", "B"],
            [[r, " ".join(roles_a[r]) or "-", " ".join(roles_b[r]) or "-"] for r in ROLE_ORDER],
        ),
        "Per layer (mean over heads):",
        markdown_table(["layer", *layer_columns], layer_rows),
        "Figures: " + ", ".join(f"`{f}`" for f in figures),
    ]
    return "\n\n".join(parts) + "\n"
