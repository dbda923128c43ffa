"""The process helper of the tests and benchmarks: output, exit code, peak memory, timeout."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.processes import REPO, run_process


def test_reports_output_exit_code_and_the_child_peak_memory(tmp_path):
    # The child holds 300 MB of touched memory for 0.3 s (the helper samples every 20 ms, so a
    # child that exits as soon as it has allocated can end between two samples); this process
    # holds 800 MB more than the child ever does, which must not count as the child's
    # (ru_maxrss would count it).
    ballast = bytearray(800 * 2**20)
    code = (
        "import os,sys,time; b = bytearray(300 * 2**20); print(os.getcwd()); time.sleep(0.3); "
        "sys.exit(3)"
    )
    pid, done = run_process([sys.executable, "-c", code], tmp_path)
    del ballast
    assert pid > 0
    assert done.returncode == 3
    assert done.stdout.strip() == str(tmp_path)
    assert 300 < done.peak_mb < 700
    assert done.seconds > 0


def test_children_import_this_checkout(tmp_path):
    code = "import emotion_lab; print(emotion_lab.__file__)"
    _, done = run_process([sys.executable, "-c", code], tmp_path)
    assert done.stdout.strip().startswith(str(REPO / "emotion_lab")), done.stderr


def test_a_command_past_its_timeout_is_stopped(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        run_process([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, timeout=1)
