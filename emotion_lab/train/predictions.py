"""Per-example predictions of a split as a table: what paired comparisons and error analysis
read back (``emotion_lab.compare``)."""

from __future__ import annotations

import pandas as pd
import torch

from emotion_lab.store import names


def predictions_frame(
    logits: torch.Tensor,
    labels: torch.Tensor,
    rows: list[int],
    texts: list[str],
    label_names: list[str],
) -> pd.DataFrame:
    """One row per example, in evaluation order. ``pred`` is the argmax of the logits, exactly
    as the logged accuracy counts it; the probabilities are their softmax."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1).numpy()
    frame = pd.DataFrame(
        {
            names.PRED_ROW: rows,
            names.PRED_TEXT: texts,
            names.PRED_LABEL: labels.numpy().astype("int16"),
            names.PRED_PREDICTED: logits.argmax(-1).numpy().astype("int16"),
        }
    )
    for i, name in enumerate(label_names):
        frame[names.PROB_PREFIX + name] = probs[:, i]
    return frame
