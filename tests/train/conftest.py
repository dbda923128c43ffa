"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest
import torch

from emotion_lab.config import DataConfig
from emotion_lab.data import load_raw
from tests.conftest import EMOTION


@pytest.fixture(scope="module")
def tweets() -> tuple[list[str], torch.Tensor]:
    """48 test-split tweets and their labels."""
    test = load_raw(DataConfig(path=str(EMOTION)))["test"].select(range(48))
    return list(test["text"]), torch.tensor(test["label"])
