"""Fail before the work: before a run or a sweep trains anything, check that every model,
tokenizer and dataset its jobs name can be had and that every job's config is valid, and refuse
in one line that lists what is missing.

"Can be had" is checked cheaply, without loading weights or data: a local directory holds the
files, or the Hugging Face cache does, or (when not offline) the Hub lists them. A dataset is
checked by resolving its builder, the lookup ``datasets.load_dataset`` starts with, which reads
no data. ``preflight=false`` or ``debug=true`` skips the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
from huggingface_hub import HfApi, constants, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

from emotion_lab.config import Config, DataConfig, Init
from emotion_lab.data.sources import is_dataset_dir, looks_local
from emotion_lab.errors import PreflightError, UserError, one_line
from emotion_lab.modeling import check_init

CONFIG_FILES = ("config.json",)
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
HUB_TIMEOUT_S = 10.0
_REMEDY = (
    "Download what is missing where the Hub is reachable (it lands in HF_HUB_CACHE), or point "
    "model.name_or_path / data.path at local copies; preflight=false skips this check."
)


@dataclass(frozen=True)
class Need:
    """Files a job loads from one model source: any one of ``files`` will do."""

    what: str
    key: str
    name: str
    files: tuple[str, ...]

    @property
    def shown(self) -> str:
        return " or ".join(self.files[:2])


def needs(cfg: Config) -> list[Need]:
    tokenizer_key = "model.tokenizer" if cfg.model.tokenizer else "model.name_or_path"
    found = [
        Need("tokenizer", tokenizer_key, cfg.model.tokenizer_name, TOKENIZER_FILES),
        Need("model config", "model.name_or_path", cfg.model.name_or_path, CONFIG_FILES),
    ]
    if cfg.init is Init.pretrained:
        found.append(
            Need("pretrained weights", "model.name_or_path", cfg.model.name_or_path, WEIGHT_FILES)
        )
    return found


def _hub_files(name: str) -> set[str] | str:
    """The files of a Hub model repo, or why they cannot be listed."""
    try:
        info = HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return "it is gated on the Hub: accept its terms there and log in (`hf auth login`)"
    except RepositoryNotFoundError:
        return "the Hub has no such model (a private one needs `hf auth login`)"
    except Exception as e:
        return f"the Hugging Face Hub is unreachable ({one_line(e)[:200]})"
    return {s.rfilename for s in info.siblings or []}


def missing_model_files(need: Need) -> str | None:
    """What is missing of ``need``, in words, or None when it can be had."""
    local = Path(need.name).expanduser()
    if local.is_dir():
        if any((local / f).is_file() for f in need.files):
            return None
        return f"{need.what} of {need.name!r}: {local} has no {need.shown}"
    if looks_local(need.name):
        return f"{need.key}={need.name}: no such directory"
    try:
        cached = [try_to_load_from_cache(need.name, f) for f in need.files]
    except HFValidationError:
        return f"{need.key}={need.name}: neither a local directory nor a Hugging Face Hub id"
    if any(isinstance(path, str) for path in cached):
        return None
    where = f"{need.what} of {need.name!r} ({need.shown}): not in the Hugging Face cache"
    if constants.is_offline_mode():
        return f"{where} {constants.HF_HUB_CACHE}, and HF_HUB_OFFLINE=1 is set"
    listed = _hub_files(need.name)
    if isinstance(listed, str):
        return f"{where}, and {listed}"
    if not listed & set(need.files):
        return f"{need.what} of {need.name!r}: its Hub repo has no {need.shown}"
    return None


def missing_dataset(cfg: DataConfig) -> str | None:
    """Why the dataset cannot be had, or None: its files exist, or its builder resolves from
    disk, cache or Hub. Plain files are only looked for: reading them is the data step's job,
    which comes before any training too."""
    for split, path in cfg.split_files.items():
        if not Path(path).expanduser().is_file():
            return f"data.files ({split}) {path}: no such file"
    if cfg.split_files:
        return None
    source = cfg.path
    if looks_local(cfg.path):
        local = Path(cfg.path).expanduser()
        if not local.exists():
            return f"data.path={cfg.path}: no such file or directory"
        if not (local.is_dir() and is_dataset_dir(local)):
            return None
        source = str(local.resolve())
    try:
        datasets.load_dataset_builder(source, cfg.name)
    except ConnectionError as e:
        if datasets.config.HF_HUB_OFFLINE:
            return (
                f"dataset {cfg.path!r}: not in the Hugging Face caches, and HF_DATASETS_OFFLINE=1 "
                "(or HF_HUB_OFFLINE=1) is set"
            )
        return f"dataset {cfg.path!r}: not cached, and the Hub is unreachable ({one_line(e)})"
    except Exception as e:
        return f"data.path={cfg.path} (data.name={cfg.name}): {one_line(e)}"
    return None


def problems(cfg: Config, memo: dict[object, str | None]) -> list[str]:
    """Everything that stops this job, each in words; ``memo`` spares repeated look-ups."""
    found: list[str] = []
    try:
        check_init(cfg.model, cfg.init)
    except UserError as e:
        found.append(one_line(e).rstrip("."))
    for need in needs(cfg):
        if need not in memo:
            memo[need] = missing_model_files(need)
        found.append(memo[need] or "")
    data_key = ("data", cfg.data.path, cfg.data.name, str(cfg.data.split_files))
    if data_key not in memo:
        memo[data_key] = missing_dataset(cfg.data)
    found.append(memo[data_key] or "")
    return list(dict.fromkeys(p for p in found if p))


def enabled(cfg: Config) -> bool:
    return cfg.preflight and not cfg.debug


def check_job(cfg: Config, what: str = "the job") -> None:
    """One job (or the base config of a search), before its data is tokenized."""
    if not enabled(cfg):
        return
    found = problems(cfg, {})
    if found:
        raise PreflightError(f"pre-flight: {what} cannot run: {'; '.join(found)}. {_REMEDY}")


def _job_list(nums: list[int], total: int) -> str:
    if len(nums) == total > 1:
        return "all jobs"
    return f"job{'s' if len(nums) > 1 else ''} {', '.join(map(str, nums))}"


def check_sweep(jobs: Sequence[Config | Exception]) -> None:
    """Every job of a sweep (``jobs[n]`` is job ``n``'s config, or why it does not compose),
    before the first starts: each problem once, with the jobs it stops."""
    stopped_by: dict[str, list[int]] = {}
    memo: dict[object, str | None] = {}
    for num, cfg in enumerate(jobs):
        found = [one_line(cfg).rstrip(".")] if isinstance(cfg, Exception) else problems(cfg, memo)
        for problem in found:
            stopped_by.setdefault(problem, []).append(num)
    if not stopped_by:
        return
    stopped = {num for nums in stopped_by.values() for num in nums}
    listing = "; ".join(f"{p} ({_job_list(nums, len(jobs))})" for p, nums in stopped_by.items())
    raise PreflightError(
        f"pre-flight: {len(stopped)} of {len(jobs)} jobs cannot run, so none was started: "
        f"{listing}. {_REMEDY}"
    )
