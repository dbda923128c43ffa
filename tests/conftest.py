"""Offline test setup: hub cache and emotion data from ../shared (or $EMOTION_LAB_SHARED)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
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


def run_cli(
    args: list[str], cwd: Path, timeout: int = 600, module: str = "emotion_lab"
) -> subprocess.CompletedProcess:
    """Run ``python -m emotion_lab`` (or another entry ``module``) as a user would, in ``cwd``."""
    return run_process([sys.executable, "-m", module, *args], cwd, timeout)[1]


def run_process(
    cmd: list[str], cwd: Path, timeout: int = 300
) -> tuple[int, subprocess.CompletedProcess]:
    """Run ``cmd`` with this checkout's package (whichever one is installed); returns its pid
    and result. On timeout it gets SIGTERM first (Accelerate's launcher stops its workers on
    SIGTERM, not on SIGKILL)."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
        raise
    return proc.pid, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
