"""Expected best validation accuracy against the number of runs tried, per value of the first
configuration key (Dodge et al., 2019, "Show Your Work"): how good each family gets for a
tuning budget, from the sweep's own runs."""

from __future__ import annotations

import pandas as pd

from emotion_lab.compare.stats import expected_max
from emotion_lab.store import names

# The score the curve is drawn for: each run's kept epoch, on validation.
BUDGET_METRIC = names.VAL_ACCURACY


def expected_max_table(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rows (key value, budget n, runs N, expected max of n runs, its std), for n = 1..N.

    Every finished run of that value is one trial: a configuration and a seed drawn at random,
    as a user tuning with a budget of n runs would draw them.
    """
    done = table[(table.status == "FINISHED") & table[BUDGET_METRIC].notna()]
    rows = []
    for value in dict.fromkeys(done[key].astype(str)):
        scores = done[done[key].astype(str) == value][BUDGET_METRIC].to_numpy(float)
        mean, std = expected_max(scores)
        rows += [
            {key: value, "budget": n + 1, "runs": len(scores), "expected_max": m, "std": s}
            for n, (m, s) in enumerate(zip(mean, std, strict=True))
        ]
    return pd.DataFrame(rows, columns=[key, "budget", "runs", "expected_max", "std"])
