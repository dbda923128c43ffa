"""Where the data comes from: a hub id, a local dataset dir, a folder of files, one file, or
explicit files per split. Every source ends as splits of ``datasets.Dataset``, each with a line
that says where it was read from (for error messages and the run's params).

Files are read with the ``datasets`` builders that ``load_dataset`` picks for their extension
(csv, json, parquet), one file at a time, so an error names the file it comes from. A folder
is split by file name as ``datasets`` does it (``train.csv``, ``dev.jsonl``, ``test-*.parquet``,
``data/train/...``): its ``get_data_patterns`` resolves them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets.data_files import DataFilesDict, get_data_patterns

from emotion_lab.config import DataConfig
from emotion_lab.errors import DataError, one_line

log = logging.getLogger(__name__)

# The extensions a data file may have, and the ``datasets`` builder (with options) that reads it;
# the same choice as ``load_dataset`` makes for a folder of such files.
FILE_BUILDERS: dict[str, tuple[str, dict[str, str]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
}
_KNOWN = ", ".join(FILE_BUILDERS)


@dataclass(frozen=True)
class Origin:
    """Where one split was read from, as ``load_dataset`` would read it again: a hub id or a
    local dataset dir (``path``, with its configuration and the revision the cache holds), or
    files (``path`` is then the ``datasets`` builder, e.g. ``csv``)."""

    path: str
    split: str
    config_name: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = ()


@dataclass
class RawData:
    splits: datasets.DatasetDict
    # Per split: the file(s) or hub split it was read from.
    origins: dict[str, str]
    # Per split: the same, as fields (for the run's dataset inputs).
    located: dict[str, Origin]


def looks_local(path: str) -> bool:
    return path.startswith(("/", ".", "~")) or Path(path).expanduser().exists()


def is_dataset_dir(folder: Path) -> bool:
    """A local copy of a hub dataset: a loading script, or a README whose YAML header declares
    the configurations; ``load_dataset`` reads those, not a file-name convention."""
    readme = folder / "README.md"
    has_card = readme.is_file() and readme.read_text(errors="replace").startswith("---")
    return has_card or any(folder.glob("*.py"))


@contextlib.contextmanager
def _quiet_builders() -> Iterator[None]:
    """The json builder logs a parse error before raising it; the raised one is reported."""
    level = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)


def read_file(path: Path, key: str) -> datasets.Dataset:
    """One data file as a Dataset; ``key`` is the config key that named it, for the errors."""
    where = f"{key}: {path}"
    suffix = path.suffix.lower()
    if suffix not in FILE_BUILDERS:
        raise DataError(f"{where}: unknown extension {suffix or '(none)'!r}; use one of {_KNOWN}.")
    if not path.is_file():
        raise DataError(f"{where}: no such file.")
    if path.stat().st_size == 0:
        raise DataError(f"{where}: the file is empty.")
    builder, options = FILE_BUILDERS[suffix]
    try:
        with _quiet_builders():
            ds = datasets.load_dataset(builder, data_files=[str(path)], split="train", **options)
    except ValueError as e:
        # What the builders raise for a file that parses to no rows: a header, or "[]".
        if "corresponds to no data" in str(e):
            raise DataError(f"{where}: the file has no data rows (a header only?).") from e
        raise DataError(f"{where}: cannot read it as {builder}: {one_line(e)}") from e
    except (datasets.exceptions.DatasetGenerationError, OSError) as e:
        cause = e.__cause__ or e
        raise DataError(f"{where}: cannot read it as {builder}: {one_line(cause)}") from e
    return ds


def _read_split(files: list[Path], key: str) -> datasets.Dataset:
    parts = [read_file(f, key) for f in files]
    if len(parts) == 1:
        return parts[0]
    try:
        return datasets.concatenate_datasets(parts)
    except ValueError as e:
        columns = {str(f): p.column_names for f, p in zip(files, parts, strict=True)}
        raise DataError(f"{key}: the files do not share their columns: {columns}") from e


def _folder_files(folder: Path) -> dict[str, list[Path]]:
    """The folder's files per split, by the names ``datasets`` gives splits; files of other
    types (a README, notes) are left out, as ``load_dataset`` leaves them out."""
    try:
        patterns = get_data_patterns(str(folder))
    except FileNotFoundError as e:
        raise DataError(f"data.path={folder}: the folder holds no data files.") from e
    resolved = DataFilesDict.from_local_or_remote(patterns, base_path=str(folder))
    files: dict[str, list[Path]] = {}
    for named, paths in resolved.items():
        split = str(named)
        known = [Path(p) for p in paths if Path(p).suffix.lower() in FILE_BUILDERS]
        if not known:
            names = ", ".join(Path(p).name for p in paths)
            raise DataError(
                f"data.path={folder}: split {split!r} has no {_KNOWN} file (found: {names})."
            )
        if len(known) < len(paths):
            log.info("data.path=%s: split %r: ignoring non-data files.", folder, split)
        files[split] = sorted(known)
    return files


def _from_files(files: dict[str, list[Path]], keys: dict[str, str]) -> RawData:
    """``keys``: per split, the config key that named its files."""
    splits = datasets.DatasetDict()
    origins = {}
    located = {}
    for split, paths in files.items():
        splits[split] = _read_split(paths, keys[split])
        origins[split] = ", ".join(str(p) for p in paths)
        builder = FILE_BUILDERS[paths[0].suffix.lower()][0]
        located[split] = Origin(builder, "train", files=tuple(str(p) for p in paths))
    return RawData(splits, origins, located)


def _cached_revision(ds: datasets.Dataset) -> str | None:
    """The hub revision a split was read at: the commit the ``datasets`` cache files it under
    (``.../<config>/<version>/<commit>/<name>.arrow``); None for local dataset dirs."""
    for cache in ds.cache_files:
        folder = Path(cache["filename"]).parent.name
        if len(folder) == 40 and all(c in "0123456789abcdef" for c in folder):
            return folder
    return None


def _from_hub(path: str, cfg: DataConfig) -> RawData:
    """A hub id or a local dataset dir, loaded by ``load_dataset`` as it stands."""
    args = (path,) if cfg.name is None else (path, cfg.name)
    named = f"data.path={cfg.path}" + (f" (data.name={cfg.name})" if cfg.name else "")
    try:
        with _quiet_builders():
            loaded = datasets.load_dataset(*args)
    except ConnectionError as e:
        raise DataError(
            f"data.path={cfg.path}: the Hugging Face Hub is unreachable and this dataset is not "
            "cached. Download it where you have network, or set data.path=<local dataset dir>."
        ) from e
    except (FileNotFoundError, ValueError) as e:
        hint = ""
        if cfg.name and "BuilderConfig" in str(e):
            hint = " Set data.name=null for its default configuration, or to one it has."
        raise DataError(f"{named}: {one_line(e)}{hint}") from e
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    origin = cfg.path + (f" [{cfg.name}]" if cfg.name else "")
    located = {
        str(split): Origin(
            path,
            str(split),
            config_name=cfg.name,
            revision=None if looks_local(path) else _cached_revision(ds),
        )
        for split, ds in loaded.items()
    }
    return RawData(loaded, {split: f"{origin} split {split}" for split in loaded}, located)


def read_sources(cfg: DataConfig) -> RawData:
    """The splits of ``data.files``, or else of ``data.path``.

    ``data.name`` chooses a configuration of a hub dataset or local dataset dir; plain files and
    folders of files have none, so there it plays no part.
    """
    if cfg.split_files:
        files = {split: [Path(f).expanduser()] for split, f in cfg.split_files.items()}
        keys = {
            cfg.train_split: "data.files.train",
            cfg.eval_split: "data.files.validation",
            cfg.test_split: "data.files.test",
        }
        return _from_files(files, keys)
    if not looks_local(cfg.path):
        return _from_hub(cfg.path, cfg)
    local = Path(cfg.path).expanduser()
    if not local.exists():
        raise DataError(
            f"data.path={cfg.path}: no such file or directory. Point data.path at a data file, "
            "a folder of train/validation/test files, a dataset directory or a hub id."
        )
    local = local.resolve()
    if local.is_file():
        return _from_files({"train": [local]}, {"train": "data.path"})
    if is_dataset_dir(local):
        return _from_hub(str(local), cfg)
    files = _folder_files(local)
    return _from_files(files, dict.fromkeys(files, "data.path"))


def load_raw(cfg: DataConfig) -> datasets.DatasetDict:
    """The splits as the source has them: columns and labels untouched, nothing carved."""
    return read_sources(cfg).splits
