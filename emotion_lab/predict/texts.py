"""Texts in (CSV, JSONL, plain lines) and predictions out (CSV, JSONL), keeping input columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emotion_lab.errors import DataError

READ_SUFFIXES = (".csv", ".jsonl", ".txt")
WRITE_SUFFIXES = (".csv", ".jsonl")


def read_texts(path: Path, column: str) -> pd.DataFrame:
    """The input rows; ``column`` holds the texts (a .txt file becomes that one column)."""
    if path.suffix not in READ_SUFFIXES:
        raise DataError(f"input={path}: expected a {', '.join(READ_SUFFIXES)} file.")
    if not path.is_file():
        raise DataError(f"input={path}: no such file.")
    try:
        if path.suffix == ".txt":
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            return pd.DataFrame({column: lines})
        if path.suffix == ".csv":
            rows = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            rows = pd.read_json(path, lines=True, dtype=False)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"input={path}: cannot parse it: {str(e).splitlines()[0]}") from e
    if column not in rows.columns:
        raise DataError(
            f"input={path} has no column {column!r} (columns: {list(rows.columns)}); "
            "set text_column=<the column holding the texts>."
        )
    rows[column] = rows[column].astype(str)
    return rows


def with_predictions(rows: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Input columns, then ``predicted_label``, ``predicted_prob`` and one ``prob_<label>`` each."""
    best = probs.argmax(axis=1)
    out = rows.copy()
    out["predicted_label"] = [labels[i] for i in best]
    out["predicted_prob"] = probs[np.arange(len(best)), best]
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    return out


def check_output(path: Path) -> None:
    if path.suffix not in WRITE_SUFFIXES:
        raise DataError(f"output={path}: expected a {' or '.join(WRITE_SUFFIXES)} file.")


def write_predictions(table: pd.DataFrame, path: Path) -> None:
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_json(path, orient="records", lines=True, force_ascii=False)
