"""The numbers of each configuration (``store.reader.Group``: every swept key but the seed): the
mean, standard deviation, min and max over its seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emotion_lab.compare.table import cell
from emotion_lab.store.names import SCORES as GROUP_METRICS

STATS = ("mean", "std", "min", "max")


def group_table(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per configuration: its key values, n finished runs, and the mean, sample standard
    deviation (ddof=1; empty for n=1), min and max of each of GROUP_METRICS."""
    done = table[table.status == "FINISHED"]
    order = list(dict.fromkeys(map(tuple, table[keys].astype(str).values))) if keys else [()]
    rows = []
    for values in order:
        part = done
        for k, v in zip(keys, values, strict=True):
            part = part[part[k].astype(str) == v]
        row: dict[str, object] = dict(zip(keys, values, strict=True))
        row["n"] = len(part)
        for metric in GROUP_METRICS:
            x = part[metric].dropna().to_numpy(float)
            row[f"{metric}_mean"] = x.mean() if len(x) else np.nan
            row[f"{metric}_std"] = x.std(ddof=1) if len(x) > 1 else np.nan
            row[f"{metric}_min"] = x.min() if len(x) else np.nan
            row[f"{metric}_max"] = x.max() if len(x) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def group_markdown_frame(groups: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The group table as text cells, ``mean ± std [min, max]`` per metric."""

    def text(row: pd.Series, metric: str) -> str:
        mean, std, low, high = (row[f"{metric}_{s}"] for s in STATS)
        if np.isnan(mean):
            return ""
        spread = "" if np.isnan(std) else f" ± {cell(metric, std)}"
        return f"{cell(metric, mean)}{spread} [{cell(metric, low)}, {cell(metric, high)}]"

    out = groups[[*keys, "n"]].copy()
    for metric in GROUP_METRICS:
        out[metric] = [text(row, metric) for _, row in groups.iterrows()]
    return out
