"""What a job's run records beside its params and metrics: its data as MLflow dataset inputs
(``store.datasets``) and the code that ran it (``store.provenance``); and, with ``resume=true``,
the checks that the run continues on the same data (refused otherwise) and the same commit
(warned otherwise).

Only the main process reads and writes the store; a refusal reaches every process, so that
they stop together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from mlflow.entities import DatasetInput, Run

from emotion_lab.config import Config
from emotion_lab.data import LabeledSplits
from emotion_lab.errors import UserError
from emotion_lab.store import names, provenance
from emotion_lab.store.datasets import check_same_data, dataset_inputs
from emotion_lab.store.writer import RunLogger
from emotion_lab.train.system_metrics import SystemSampler

MODULE = "emotion_lab"


@dataclass
class JobRecords:
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[DatasetInput] = field(default_factory=list)
    # Time spent making and logging them, and the system-metrics sampler's (their cost).
    seconds: float = 0.0
    sampler: SystemSampler | None = None

    def cost_s(self) -> float:
        return self.seconds + (self.sampler.seconds if self.sampler else 0.0)


def job_records(
    cfg: Config, accelerator: Accelerator, data: LabeledSplits | None, previous: Run | None
) -> JobRecords:
    """The job's provenance tags and dataset inputs; refuses (``DataError``, on every process)
    to resume ``previous`` on rows other than it started with, unless the config allows it."""
    start = time.perf_counter()
    records, refusal = JobRecords(), None
    if accelerator.is_main_process:
        records.tags = provenance.source_tags(MODULE)
        if data is not None:
            records.inputs = dataset_inputs(data)
        if previous is not None:
            try:
                check_same_data(previous, records.inputs, cfg.resume_changed_data)
            except UserError as e:
                refusal = e
    records.seconds = time.perf_counter() - start
    refusal = broadcast_object_list([refusal])[0]
    if refusal is not None:
        raise refusal
    return records


def log_records(logger: RunLogger, records: JobRecords, previous: Run | None) -> None:
    """Log them to the job's open run (a new run got the tags when it was created)."""
    start = time.perf_counter()
    if previous is not None:
        logger.tags(provenance.resumed_tags(previous.data.tags, records.tags))
    logger.inputs(records.inputs)
    diff = provenance.uncommitted_diff() if logger.run_id else ""
    if diff:
        logger.text(diff, names.GIT_DIFF_ARTIFACT)
    records.seconds += time.perf_counter() - start


def sweep_records(run_id: str, previous: Run | None) -> None:
    """The provenance of a sweep's parent run: its tags (a resumed sweep's updated, with the
    commit warning) and the uncommitted diff."""
    logger = RunLogger(run_id)
    tags = provenance.source_tags(MODULE)
    logger.tags(tags if previous is None else provenance.resumed_tags(previous.data.tags, tags))
    diff = provenance.uncommitted_diff()
    if diff:
        logger.text(diff, names.GIT_DIFF_ARTIFACT)
    logger.flush()
