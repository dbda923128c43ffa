"""Pre-flight: before anything trains, every model, tokenizer, dataset and job config a run or a
sweep names is checked, against the real shared Hugging Face cache and data (offline), a dead
Hub endpoint, and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emotion_lab.config import Config, DataConfig, Init, ModelConfig
from emotion_lab.errors import ConfigError, PreflightError
from emotion_lab.preflight import (
    WEIGHT_FILES,
    Need,
    check_job,
    check_sweep,
    missing_dataset,
    missing_model_files,
)
from tests.conftest import EMOTION, REPO, SMALL_DATA, free_port, one_error_line, run_cli

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _cfg(**model: object) -> Config:
    init = model.pop("init", Init.pretrained)
    return Config(model=ModelConfig(**model), data=DataConfig(path=str(EMOTION)), init=init)


def test_what_the_shared_cache_holds_passes():
    check_job(_cfg(name_or_path=MINILM))  # config, tokenizer and weights all cached
    check_job(_cfg(init=Init.scratch))  # distilgpt2 without weights is enough from scratch


def test_missing_pretrained_weights_offline_are_named_with_where_they_were_looked_for():
    with pytest.raises(PreflightError) as err:
        check_job(_cfg())
    message = str(err.value)
    assert message.startswith(
        "pre-flight: the job cannot run: pretrained weights of 'distilgpt2' "
        "(model.safetensors or pytorch_model.bin): not in the Hugging Face cache "
        f"{os.environ['HF_HUB_CACHE']}, and HF_HUB_OFFLINE=1 is set. "
    )
    assert "preflight=false" in message and "\n" not in message


def test_a_local_model_dir_without_the_files_is_named(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    need = Need("pretrained weights", "model.name_or_path", str(tmp_path), WEIGHT_FILES)
    assert missing_model_files(need) == (
        f"pretrained weights of {str(tmp_path)!r}: {tmp_path} has no "
        "model.safetensors or pytorch_model.bin"
    )
    gone = Need("model config", "model.name_or_path", str(tmp_path / "nope"), ("config.json",))
    assert missing_model_files(gone) == f"model.name_or_path={tmp_path / 'nope'}: no such directory"


def test_datasets_are_resolved_without_reading_them(tmp_path: Path):
    assert missing_dataset(DataConfig(path=str(EMOTION))) is None
    assert "no such file or directory" in missing_dataset(DataConfig(path=str(tmp_path / "x")))
    offline = missing_dataset(DataConfig())  # dair-ai/emotion is not in the shared cache
    assert offline == (
        "dataset 'dair-ai/emotion': not in the Hugging Face caches, and HF_DATASETS_OFFLINE=1 "
        "(or HF_HUB_OFFLINE=1) is set"
    )
    wrong_name = missing_dataset(DataConfig(path=str(EMOTION), name="nosuch"))
    assert "data.name=nosuch" in wrong_name and "'split'" in wrong_name


def test_a_sweep_lists_each_problem_once_with_the_jobs_it_stops():
    jobs: list[Config | Exception] = [
        _cfg(init=Init.scratch),
        _cfg(init=Init.scratch),
        _cfg(),
        ConfigError("lr=-1.0 is not valid: expected a positive float."),
    ]
    with pytest.raises(PreflightError) as err:
        check_sweep(jobs)
    message = str(err.value)
    assert message.startswith("pre-flight: 2 of 4 jobs cannot run, so none was started: ")
    assert "HF_HUB_OFFLINE=1 is set (job 2); lr=-1.0 is not valid" in message
    assert "expected a positive float (job 3)" in message


def test_skipped_with_preflight_false_or_debug():
    for skip in ({"preflight": False}, {"debug": True}):
        cfg = _cfg()
        for key, value in skip.items():
            setattr(cfg, key, value)
        check_job(cfg)  # would raise: distilgpt2's weights are missing


def test_online_an_unreachable_hub_is_said_so():
    """Not offline, the Hub is asked: here an endpoint where nothing listens."""
    code = (
        "from emotion_lab.preflight import missing_model_files, Need, WEIGHT_FILES\n"
        "print(missing_model_files(Need('pretrained weights', 'model.name_or_path', "
        "'distilgpt2', WEIGHT_FILES)))"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith(
        "pretrained weights of 'distilgpt2' (model.safetensors or pytorch_model.bin): not in the "
        "Hugging Face cache, and the Hugging Face Hub is unreachable ("
    )


@pytest.mark.slow
def test_a_scratch_and_pretrained_sweep_without_weights_trains_nothing(tmp_path: Path):
    """The four jobs of the README's main sweep, offline, with distilgpt2's weights missing."""
    start = time.monotonic()
    proc = run_cli(["-m", "init=scratch,pretrained", "lr=1e-3,5e-5", *SMALL_DATA], tmp_path)
    elapsed = time.monotonic() - start
    line = one_error_line(proc)
    assert line.startswith(
        "emotion_lab: error: pre-flight: 2 of 4 jobs cannot run, so none was started: "
        "pretrained weights of 'distilgpt2' (model.safetensors or pytorch_model.bin): not in the "
        "Hugging Face cache"
    )
    assert "(jobs 2, 3)" in line
    # Nothing ran: no store, no job folder, no epoch.
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not list(tmp_path.rglob("result.json"))
    assert "epoch" not in proc.stdout + proc.stderr
    assert elapsed < 90  # interpreter and library start-up included, on 2 shared cores


@pytest.mark.slow
def test_a_search_checks_its_base_config(tmp_path: Path):
    """Optuna picks its jobs as it goes: the config they share is checked."""
    proc = run_cli(
        ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *SMALL_DATA], tmp_path
    )
    line = one_error_line(proc)
    assert line.startswith(
        "emotion_lab: error: pre-flight: the search cannot run: pretrained weights of 'distilgpt2'"
    )
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


@pytest.mark.slow
def test_a_single_job_is_checked_before_tokenization(tmp_path: Path):
    checked = run_cli(["init=pretrained", *SMALL_DATA], tmp_path)
    line = one_error_line(checked)
    assert line.startswith("emotion_lab: error: pre-flight: the job cannot run: pretrained weights")
    assert "Tokenizing" not in checked.stderr + checked.stdout
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
