"""A job's data as MLflow dataset inputs: the train, validation and test rows it used, each with
where they came from, a digest of their content, their schema and their row count, so the
Runs view's Datasets column shows what trained and tested every run.

The digest is taken of the rows after carving and sampling (the rows the job trained and tested
on, in their order), over every column, so an edited data file changes it; ``resume=true``
compares it with the interrupted run's before continuing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import datasets
import pyarrow as pa
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.entities import Dataset, DatasetInput, InputTag, Run
from mlflow.models import infer_signature
from mlflow.types import Schema

from emotion_lab.data.sources import Origin
from emotion_lab.data.splits import LabeledSplits
from emotion_lab.errors import DataError
from emotion_lab.store import names

# Rows the schema is read from: every column is typed by its values.
_SCHEMA_ROWS = 100


def digest(ds: datasets.Dataset) -> str:
    """A content hash of the rows, in order: every column's values and types, as one Arrow
    stream (the rows taken out of their source, in one chunk, so the cut of the file into
    chunks does not count)."""
    table = ds.with_format("arrow")[:].combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()[:16]


def schema(ds: datasets.Dataset) -> Schema:
    """The columns' MLflow types, read off the first rows."""
    head = ds.select(range(min(len(ds), _SCHEMA_ROWS))).to_pandas()
    with warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold missing values: labels never do.
        warnings.simplefilter("ignore", UserWarning)
        return infer_signature(head).inputs


def _base_name(origin: Origin) -> str:
    """The data's short name: the hub id's or folder's last part, or the (first) file's name."""
    if origin.files:
        return Path(origin.files[0]).name
    return Path(origin.path.rstrip("/")).name or origin.path


def _source(origin: Origin) -> HuggingFaceDatasetSource:
    """As ``load_dataset`` reads it again: the hub id (or dataset dir) with its configuration,
    split and revision, or the builder with the data files."""
    return HuggingFaceDatasetSource(
        path=origin.path,
        config_name=origin.config_name,
        data_files=list(origin.files) or None,
        split=origin.split,
        revision=origin.revision,
    )


def dataset_inputs(data: LabeledSplits) -> list[DatasetInput]:
    """One input per role (context ``training``, ``validation``, ``testing``)."""
    inputs = []
    splits = {"train": data.train, "validation": data.validation, "test": data.test}
    for role, ds in splits.items():
        source = _source(data.located[role])
        entity = Dataset(
            name=f"{_base_name(data.located[role])}-{role}",
            digest=digest(ds),
            source_type=source._get_source_type(),
            source=source.to_json(),
            schema=json.dumps({"mlflow_colspec": schema(ds).to_dict()}),
            # The rows used; MLflow's own profile would give the size of the whole source.
            profile=json.dumps({"num_rows": len(ds)}),
        )
        context = InputTag(names.DATASET_CONTEXT_TAG, names.DATASET_CONTEXTS[role])
        inputs.append(DatasetInput(entity, [context]))
    return inputs


def logged_digests(run: Run) -> dict[str, set[str]]:
    """The digests a run's dataset inputs hold, by context."""
    found: dict[str, set[str]] = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        for tag in item.tags:
            if tag.key == names.DATASET_CONTEXT_TAG:
                found.setdefault(tag.value, set()).add(item.dataset.digest)
    return found


def check_same_data(run: Run, inputs: list[DatasetInput], allowed: bool) -> None:
    """Refuse to resume ``run`` on other rows than it started with, unless ``allowed``."""
    before = logged_digests(run)
    for item in inputs:
        context = next(t.value for t in item.tags if t.key == names.DATASET_CONTEXT_TAG)
        if context in before and item.dataset.digest not in before[context]:
            if allowed:
                return
            raise DataError(
                f"resume=true: the {context} data of run {run.info.run_id} changed since it "
                f"started (digest {item.dataset.digest}, it logged "
                f"{', '.join(sorted(before[context]))}); restore the data, or set "
                "resume_changed_data=true to continue on the new rows."
            )
