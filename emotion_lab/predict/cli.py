"""Hydra entry point: ``python -m emotion_lab.predict run_id=<id> text='...'`` or
``input=texts.csv [output=preds.jsonl]``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from emotion_lab import options
from emotion_lab.config import CONFIG_DIR
from emotion_lab.errors import ConfigError
from emotion_lab.predict.config import PredictConfig, check, register_schema
from emotion_lab.predict.texts import (
    check_input,
    check_output,
    read_texts,
    run_text_columns,
    texts_of,
    with_predictions,
    write_predictions,
)
from emotion_lab.reporting import quiet_libraries, report_error
from emotion_lab.store.connection import open_for_reading
from emotion_lab.store.reader import get_run
from emotion_lab.store.registry import run_of_model

if TYPE_CHECKING:
    from emotion_lab.predict.model import Classifier

register_schema()
options.register_resolver()

_SHOWN_ROWS = 20


def probability_table(probs: np.ndarray, labels: list[str]) -> str:
    """One text's classes, most likely first, with a bar to read the spread at a glance."""
    width = max(len(name) for name in labels)
    lines = []
    for i in np.argsort(-probs):
        bar = "█" * round(float(probs[i]) * 40)
        lines.append(f"  {labels[i]:<{width}}  {probs[i]:.4f}  {bar}")
    return "\n".join(lines)


def _shorten(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _file_summary(out: pd.DataFrame, labels: list[str]) -> str:
    counts = out.predicted_label.value_counts().reindex(labels, fill_value=0)
    summary = "  ".join(f"{name} {n}" for name, n in counts.items())
    return f"{len(out)} texts; predicted: {summary}"


def _quiet() -> None:
    """Keep the terminal for the predictions: no download or weight-loading bars."""
    import transformers

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    quiet_libraries()
    transformers.utils.logging.disable_progress_bar()


def _print_one(clf: Classifier, text: str, cfg: PredictConfig) -> None:
    from emotion_lab.predict.model import predict_proba

    probs = predict_proba(clf, [text], cfg.batch_size, cfg.max_length)[0]
    best = int(probs.argmax())
    print(f"text: {text}\nlabel: {clf.label_names[best]} ({probs[best]:.4f})")
    print(probability_table(probs, clf.label_names))


def _predict_file(
    clf: Classifier, rows: pd.DataFrame, columns: list[str], cfg: PredictConfig
) -> None:
    from emotion_lab.predict.model import predict_proba

    texts = texts_of(rows, columns)
    probs = predict_proba(clf, texts, cfg.batch_size, cfg.max_length, progress=True)
    out = with_predictions(rows, probs, clf.label_names)
    if cfg.output:
        write_predictions(out, Path(cfg.output))
    else:
        from emotion_lab.data.tokenization import PAIR_JOIN  # with the model: not at start-up

        width = max(map(len, clf.label_names))
        shown = out.head(_SHOWN_ROWS)
        for text, label, p in zip(texts, shown.predicted_label, shown.predicted_prob, strict=False):
            shown_text = text if isinstance(text, str) else PAIR_JOIN.join(text)
            print(f"{label:<{width}}  {p:.4f}  {_shorten(shown_text)}")
        if len(out) > _SHOWN_ROWS:
            print(f"... {len(out) - _SHOWN_ROWS} more; set output=preds.csv|.jsonl to keep all.")
    print(_file_summary(out, clf.label_names))
    if cfg.output:
        print(f"Wrote {cfg.output}")


def _text_columns(cfg: PredictConfig, run_params: dict[str, str]) -> list[str]:
    """``text_column`` as given, else the column(s) the run trained on."""
    if cfg.text_column is None:
        return run_text_columns(run_params)
    return [cfg.text_column] if isinstance(cfg.text_column, str) else list(cfg.text_column)


def run(cfg: PredictConfig) -> None:
    check(cfg)
    _quiet()
    # Input and output are checked before the model download, so a typo fails fast.
    if cfg.input:
        check_input(Path(cfg.input))
    if cfg.output:
        check_output(Path(cfg.output))
    client, _ = open_for_reading(cfg.tracking)
    if cfg.model_uri:
        cfg.run_id = run_of_model(client, cfg.model_uri)
    columns = _text_columns(cfg, get_run(client, cfg.run_id).data.params)  # type: ignore[arg-type]
    rows = read_texts(Path(cfg.input), columns) if cfg.input else None
    if rows is None and len(columns) > 1:
        raise ConfigError(
            f"run {cfg.run_id} classifies sentence pairs ({', '.join(columns)}): give "
            "input=<.csv or .jsonl file> with both columns."
        )
    # torch and transformers load only now, so argument mistakes are reported at once.
    from emotion_lab.predict.model import load_from_run

    clf = load_from_run(client, cfg.run_id)  # type: ignore[arg-type]
    if rows is None:
        _print_one(clf, cfg.text or "", cfg)
    else:
        _predict_file(clf, rows, columns, cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(dcfg: DictConfig) -> None:
    try:
        run(OmegaConf.to_object(dcfg))  # type: ignore[arg-type]
    except Exception as e:
        report_error(e, bool(dcfg.get("debug", False)))
        sys.exit(1)
