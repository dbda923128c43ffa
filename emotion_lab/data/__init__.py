"""The data of a job: read from its source (``sources``), labels encoded (``labels``), splits
carved and sampled (``splits``), tokenized and batched (``tokenization``)."""

from emotion_lab.data.sources import load_raw, read_sources
from emotion_lab.data.splits import LabeledSplits, load_splits
from emotion_lab.data.tokenization import (
    LengthGroupedBatchSampler,
    TokenizedSplits,
    make_loaders,
    tokenize_splits,
)

__all__ = [
    "LabeledSplits",
    "LengthGroupedBatchSampler",
    "TokenizedSplits",
    "load_raw",
    "load_splits",
    "make_loaders",
    "read_sources",
    "tokenize_splits",
]
