"""Run a command as a user would, with this checkout's package importable: the one process
helper of the tests and the benchmarks (benchmarks run as scripts and put the repository on
``sys.path`` to import it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from emotion_lab.process import high_water_rss_kb

REPO = Path(__file__).resolve().parent.parent
ERROR_PREFIX = "emotion_lab: error: "


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The line a command stopped by a user error prints, checked: it exits with 1, prints no
    traceback, and exactly one line of its stderr speaks of an error, the ``emotion_lab: error:``
    line, which is returned."""
    tail = proc.stderr[-3000:]
    assert proc.returncode == 1, tail
    assert "Traceback" not in proc.stderr, tail
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(ERROR_PREFIX), tail
    return errors[0]


class Finished(subprocess.CompletedProcess):
    """A finished command, with its wall time and its process's peak memory in MB."""

    def __init__(  # noqa: PLR0913 - CompletedProcess's fields, then the two measured ones
        self, args: list[str], returncode: int, stdout: str, stderr: str, seconds: float, kb: int
    ) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.seconds = seconds
        self.peak_mb = kb / 1024


def run_process(
    cmd: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> tuple[int, Finished]:
    """Run ``cmd`` in ``cwd`` with this checkout's package first on the path; returns its pid
    and result. Past ``timeout`` it gets SIGTERM (Accelerate's launcher stops its workers on
    SIGTERM, not on SIGKILL), SIGKILL a minute later, and ``TimeoutExpired`` is raised.

    Its peak memory is its high-water RSS, read every 20 ms while it runs (growth in its last
    20 ms can be missed; Linux only, else 0).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, text=True, env=env)
        reaped = threading.Event()
        timed_out = threading.Event()
        peak_kb = [0]

        def watch() -> None:
            # Signals go by pid: until waitpid below reaps the child, its pid cannot be reused.
            kill_at = None
            while not reaped.wait(0.02):
                peak_kb[0] = max(peak_kb[0], high_water_rss_kb(proc.pid) or 0)
                now = time.perf_counter()
                if not timed_out.is_set() and now - start > timeout:
                    timed_out.set()
                    os.kill(proc.pid, signal.SIGTERM)
                    kill_at = now + 60
                elif kill_at is not None and now > kill_at:
                    os.kill(proc.pid, signal.SIGKILL)
                    kill_at = None

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # waitpid, not Popen.wait: the watcher may signal the pid until it is reaped here.
        _, status = os.waitpid(proc.pid, 0)
        reaped.set()
        watcher.join()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
    return proc.pid, Finished(cmd, proc.returncode, stdout, stderr, seconds, peak_kb[0])


def run_cli(
    args: list[str],
    cwd: Path,
    timeout: float = 600,
    module: str = "emotion_lab",
    env: dict[str, str] | None = None,
) -> Finished:
    """``python -m emotion_lab`` (or another entry ``module``) with ``args``, in ``cwd``."""
    return run_process([sys.executable, "-m", module, *args], cwd, timeout, env)[1]
