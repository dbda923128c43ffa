"""Texts in (CSV, JSONL, plain lines) and predictions out (CSV, JSONL), keeping input columns.

A run trained on sentence pairs reads both texts of each pair from two columns of the input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_lab.errors import DataError
from emotion_lab.store import names
from emotion_lab.store.names import PROB_PREFIX

READ_SUFFIXES = (".csv", ".jsonl", ".txt")
WRITE_SUFFIXES = (".csv", ".jsonl")


def run_text_columns(params: Mapping[str, str]) -> list[str]:
    """The text column(s) a run trained on (its ``data.text_column`` param; a pair is logged as
    a JSON list); ``text`` for a run that logged none."""
    value = params.get(names.TEXT_COLUMN_PARAM, "text")
    return json.loads(value) if value.startswith("[") else [value]


def check_input(path: Path) -> None:
    if path.suffix not in READ_SUFFIXES:
        raise DataError(f"input={path}: expected a {', '.join(READ_SUFFIXES)} file.")
    if not path.is_file():
        raise DataError(f"input={path}: no such file.")


def read_texts(path: Path, columns: list[str]) -> pd.DataFrame:
    """The input rows; ``columns`` hold the text, or the two texts of a pair (a .txt file
    becomes the one text column)."""
    check_input(path)
    try:
        if path.suffix == ".txt":
            if len(columns) > 1:
                raise DataError(
                    f"input={path}: the run classifies pairs ({', '.join(columns)}); a .txt file "
                    "holds one text per line: give a .csv or .jsonl with both columns."
                )
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            return pd.DataFrame({columns[0]: lines})
        if path.suffix == ".csv":
            rows = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            rows = pd.read_json(path, lines=True, dtype=False)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"input={path}: cannot parse it: {str(e).splitlines()[0]}") from e
    for column in columns:
        if column not in rows.columns:
            raise DataError(
                f"input={path} has no column {column!r} (columns: {list(rows.columns)}); "
                "set text_column=<the column holding the texts> ([first, second] for pairs)."
            )
        rows[column] = rows[column].astype(str)
    return rows


def texts_of(rows: pd.DataFrame, columns: list[str]) -> list[str] | list[tuple[str, str]]:
    """What the model reads of each row: its text, or its (first, second) pair."""
    if len(columns) == 1:
        return rows[columns[0]].tolist()
    return list(zip(rows[columns[0]], rows[columns[1]], strict=True))


def with_predictions(rows: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Input columns, then ``predicted_label``, ``predicted_prob`` and one ``prob_<label>`` each."""
    best = probs.argmax(axis=1)
    out = rows.copy()
    out[names.PREDICTED_LABEL] = [labels[i] for i in best]
    out[names.PREDICTED_PROB] = probs[np.arange(len(best)), best]
    for i, name in enumerate(labels):
        out[f"{PROB_PREFIX}{name}"] = probs[:, i]
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
