"""Writes that fail for lack of space are named as such, in one line that says what to do."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import torch

from emotion_lab.reporting import report_error
from emotion_lab.storage import describe_space_error, space_problem

LIMIT = 2**20


@pytest.fixture
def file_size_limit():
    """This process may write no file over 1 MB (`ulimit -f`), as a full disk would stop it."""
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, before[1]))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, before)


def test_a_write_over_the_limit_is_reported_in_one_line(tmp_path: Path, file_size_limit, capsys):
    path = tmp_path / "big.bin"
    with pytest.raises(OSError) as caught:
        path.write_bytes(b"0" * (2 * LIMIT))
    line = report_error(caught.value, debug=False)
    assert line == describe_space_error(caught.value)
    assert line == (
        # A write() error does not name its file.
        "a write failed: a file outgrew the file-size limit (ulimit -f) of 1 MB. To go on, "
        "raise the limit (ulimit -f unlimited), then rerun the same command with resume=true "
        "(finished runs and the last checkpoint are kept)."
    )
    assert capsys.readouterr().err == f"emotion_lab: error: {line}\n"


def test_torch_save_says_nothing_of_space_so_the_sizes_tell(tmp_path: Path, file_size_limit):
    weights = torch.zeros(LIMIT // 2)  # 2 MB
    with pytest.raises(RuntimeError) as caught:
        torch.save(weights, tmp_path / "w.pt")
    assert describe_space_error(caught.value) is None  # an opaque stream error
    problem = space_problem(caught.value, tmp_path, [weights.numel() * 4])
    assert problem is not None and not problem.disk_full
    assert problem.remedy == "raise the limit (ulimit -f unlimited; a file needs about 2 MB)"
    # A failure that sizes do not explain is not called a space problem.
    assert space_problem(caught.value, tmp_path, [1000]) is None
