"""A 2-job sweep SIGKILLed at a few fixed moments, or stopped by SIGTERM, finishes with
resume=true exactly as if it had never been killed. `nox -s faults` runs the full seeded
matrix (benchmarks/faults.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.faults import Fault, Histories, inject, reference_sweep, sweep_args
from tests.conftest import EMOTION

FAULTS = [
    # Job 0's epoch-end checkpoint is written to its temporary folder, not yet renamed.
    Fault("checkpoint_write", 5),
    # Job 0's model is uploaded; its run is not yet FINISHED.
    Fault("model_artifact", 2),
    # Job 0 is done, job 1 not started: the resumed sweep creates it under the old parent.
    Fault("between_jobs", 1),
    # SIGTERM during job 0's step 5: checkpointed at step 5 (the periodic ones are at 3 and 6),
    # the job and the parent closed KILLED, one line printed.
    Fault("train_step", 5, signal="TERM"),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[int, Histories], dict]:
    return reference_sweep(sweep_args(str(EMOTION)), tmp_path_factory.mktemp("reference"))


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.spec)
def test_a_killed_sweep_resumes_to_the_uninterrupted_result(
    reference: tuple[dict[int, Histories], dict], fault: Fault, tmp_path: Path
):
    histories, counts = reference
    assert fault.n <= counts[fault.phase]
    outcome = inject(sweep_args(str(EMOTION)), tmp_path, fault, histories)
    assert outcome.problems == []
    assert outcome.lost == 0
    assert outcome.steps_lost == 0
