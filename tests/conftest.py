"""Offline test setup: hub cache and emotion data from ../shared (or $EMOTION_LAB_SHARED).

The process helpers (``run_cli``, ``run_process``, ``one_error_line``) live in tests/processes.py,
shared with the benchmarks; they are imported here for the tests.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tests.processes import REPO, one_error_line, run_cli, run_process

__all__ = ["REPO", "one_error_line", "run_cli", "run_process"]

SHARED = Path(os.environ.get("EMOTION_LAB_SHARED", REPO.parent / "shared")).resolve()
EMOTION = SHARED / "data" / "emotion"

if not (SHARED / "hf-hub").is_dir() or not EMOTION.is_dir():
    raise pytest.UsageError(
        f"test data not found at {SHARED}: put the shared folder beside the repo "
        "or set EMOTION_LAB_SHARED"
    )

# Offline, before transformers/datasets/huggingface_hub are imported anywhere.
os.environ.update(
    HF_HUB_CACHE=str(SHARED / "hf-hub"),
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
    MLFLOW_ENABLE_ASYNC_LOGGING="false",
)


def free_port() -> int:
    """A local TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracking_uri(cwd: Path) -> str:
    return f"sqlite:///{cwd / 'outputs' / 'mlflow.db'}"


def sweep_runs(cwd: Path) -> tuple[list, list]:
    """The sweep parent runs and the job runs in the default store under ``cwd``."""
    from mlflow.tracking import MlflowClient

    from emotion_lab.store.names import ROLE_JOB, ROLE_SWEEP, ROLE_TAG

    client = MlflowClient(tracking_uri(cwd))
    experiment = client.get_experiment_by_name("emotion_lab")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_SWEEP]
    return parents, [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_JOB]


SMALL_DATA = [
    f"data.path={EMOTION}",
    "data.max_train_samples=96",
    "data.max_eval_samples=48",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "trainer.log_every_n_steps=2",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, tiny GPT-2 checkpoint on disk (distilgpt2's tokenizer), for the pretrained path."""
    from transformers import AutoConfig, GPT2LMHeadModel

    from emotion_lab.config import ModelConfig
    from emotion_lab.modeling import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig().tokenizer_name)
    config = AutoConfig.from_pretrained("distilgpt2", n_layer=2, n_head=2, n_embd=32)
    model = GPT2LMHeadModel(config)  # a language model without a classification head
    path = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def seed_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict:
    """One tiny sweep shared by the tests that only read a sweep: init x seed, 2 x 2 jobs of a
    tiny GPT-2 (one epoch on a small sample), models logged. The reading commands log their
    reports to it, each under its own artifact folder."""
    cwd = tmp_path_factory.mktemp("seed-sweep")
    proc = run_cli(
        [
            "-m",
            "init=scratch,pretrained",
            "seed=1,2",
            f"model.name_or_path={tiny_checkpoint}",
            "trainer.mixed_precision=no",
            *SMALL_DATA,
        ],
        cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (parent,), jobs = sweep_runs(cwd)
    return {"cwd": cwd, "parent": parent, "jobs": jobs}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
