"""A run's logged classifier, and batched class probabilities for many texts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mlflow.tracking import MlflowClient
from tqdm import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from emotion_lab.errors import DataError
from emotion_lab.modeling import load_tokenizer
from emotion_lab.predict.texts import run_text_columns
from emotion_lab.store import names
from emotion_lab.store.reader import SAFE_LOADING, get_run, load_logged_model


@dataclass
class Classifier:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    label_names: list[str]
    # The truncation length the run trained with.
    max_length: int
    # The text column the run trained on, or the two of a sentence pair.
    text_columns: list[str]


def load_from_dir(path: Path, max_length: int | None, text_columns: list[str]) -> Classifier:
    """The classifier saved in ``path`` (safetensors only, no remote code)."""
    tokenizer = load_tokenizer(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(path, **SAFE_LOADING).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    length = tokenizer.model_max_length if max_length is None else max_length
    return Classifier(model, tokenizer, labels, int(length), text_columns)


def load_from_run(client: MlflowClient, run_id: str) -> Classifier:
    path = load_logged_model(client, run_id)
    params = get_run(client, run_id).data.params
    max_length = params.get(names.MAX_LENGTH_PARAM)
    return load_from_dir(
        path, None if max_length is None else int(max_length), run_text_columns(params)
    )


def predict_proba(
    clf: Classifier,
    texts: list[str] | list[tuple[str, str]],
    batch_size: int = 64,
    max_length: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Class probabilities, one row per text (or (first, second) pair, tokenized as a pair the
    way training did). Texts are batched by length, each batch padded to its own longest text,
    and the rows put back in input order."""
    parts = [(t,) if isinstance(t, str) else t for t in texts]
    blank = [i for i, p in enumerate(parts) if not all(t.strip() for t in p)]
    if blank:
        raise DataError(f"text {blank[0] + 1} of {len(texts)} is empty; remove empty texts.")
    names = [n for n in clf.tokenizer.model_input_names if n != "labels"]
    # As training tokenizes: one list of texts, or the firsts and the seconds of the pairs.
    columns = [list(column) for column in zip(*parts, strict=True)]
    enc = clf.tokenizer(*columns, truncation=True, max_length=max_length or clf.max_length)
    features = [{n: enc[n][i] for n in names if n in enc} for i in range(len(texts))]
    order = sorted(range(len(texts)), key=lambda i: len(features[i]["input_ids"]))
    collate = DataCollatorWithPadding(clf.tokenizer)
    device = next(clf.model.parameters()).device
    probs = np.zeros((len(texts), len(clf.label_names)), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="predicting", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            batch = collate([features[i] for i in idx]).to(device)
            logits = clf.model(**batch).logits.float()
            probs[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return probs
