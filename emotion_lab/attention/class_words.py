"""The words that matter most for each class, by one attribution method.

Each text's word scores are divided by the sum of their absolute values (a word's share of
that text's explanation), so long and short texts weigh alike. Per class: each word's mean share
over its occurrences, how often it occurs, a 95% bootstrap interval over its occurrences, and
its rank; words seen fewer than ``min_count`` times are not ranked. Three groupings: the class
the model predicts, the gold label, and the predicted class of the misclassified texts only.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from emotion_lab.attention import intervals
from emotion_lab.attention.attributions import Attributions

GROUPS = ("predicted", "gold", "misclassified")
COLUMNS = [
    "group",
    "class",
    "word",
    "method",
    "score",
    "score_low",
    "score_high",
    "count",
    "rank",
]


def shares(scores: np.ndarray) -> np.ndarray:
    total = np.abs(scores).sum()
    return scores / total if total > 0 else scores


def words_by_class(  # noqa: PLR0913 - the texts' scores and labels, then the ranking options by keyword
    attributions: Attributions,
    method: str,
    gold: np.ndarray,
    class_names: list[str],
    *,
    min_count: int,
    top: int,
    rng: np.random.Generator,
    resamples: int,
) -> pd.DataFrame:
    a = attributions
    rows = []
    for group in GROUPS:
        occurrences: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for i, text in enumerate(a.texts):
            if group == "misclassified" and a.predicted[i] == gold[i]:
                continue
            cls = int(gold[i] if group == "gold" else a.predicted[i])
            for word, value in zip(text.words, shares(a.scores[method][i]), strict=True):
                occurrences[cls][word].append(float(value))
        for cls in sorted(occurrences):
            ranked = sorted(
                (
                    (float(np.mean(v)), w, np.array(v))
                    for w, v in occurrences[cls].items()
                    if len(v) >= min_count
                ),
                key=lambda item: -item[0],
            )[:top]
            for rank, (score, word, values) in enumerate(ranked, start=1):
                counts = intervals.draw_counts(rng, len(values), resamples)
                _, low, high = intervals.mean_interval(values, counts)
                rows.append(
                    [
                        group,
                        class_names[cls],
                        word,
                        method,
                        score,
                        float(low),
                        float(high),
                        len(values),
                        rank,
                    ]
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def top_words(table: pd.DataFrame, group: str, n: int) -> dict[str, list[str]]:
    """Per class, its ``n`` best-ranked words in ``group``."""
    part = table[(table.group == group) & (table["rank"] <= n)]
    return {str(c): list(g.sort_values("rank").word) for c, g in part.groupby("class")}
