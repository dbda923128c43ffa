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

REPO = Path(__file__).resolve().parent.parent


class Finished(subprocess.CompletedProcess):
    """A finished command, with its wall time and the peak memory (max RSS) of its process."""

    def __init__(
        self, args: list[str], returncode: int, stdout: str, stderr: str, seconds: float, rss: int
    ) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.seconds = seconds
        self.peak_mb = rss / 1024  # Linux reports ru_maxrss in KiB


def run_process(
    cmd: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> tuple[int, Finished]:
    """Run ``cmd`` in ``cwd`` with this checkout's package first on the path; returns its pid
    and result. Past ``timeout`` it gets SIGTERM (Accelerate's launcher stops its workers on
    SIGTERM, not on SIGKILL), SIGKILL a minute later, and ``TimeoutExpired`` is raised."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, text=True, env=env)
        reaped = threading.Event()
        timed_out = threading.Event()

        def stop() -> None:
            # Signals go by pid: until wait4 below reaps the child, its pid cannot be reused.
            for wait, sig in ((timeout, signal.SIGTERM), (60, signal.SIGKILL)):
                if reaped.wait(wait):
                    return
                timed_out.set()
                os.kill(proc.pid, sig)

        watchdog = threading.Thread(target=stop, daemon=True)
        watchdog.start()
        # wait4, not Popen.wait: it hands back this child's own resource usage (its peak RSS).
        _, status, usage = os.wait4(proc.pid, 0)
        reaped.set()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
    return proc.pid, Finished(cmd, proc.returncode, stdout, stderr, seconds, usage.ru_maxrss)


def run_cli(
    args: list[str],
    cwd: Path,
    timeout: float = 600,
    module: str = "emotion_lab",
    env: dict[str, str] | None = None,
) -> Finished:
    """``python -m emotion_lab`` (or another entry ``module``) with ``args``, in ``cwd``."""
    return run_process([sys.executable, "-m", module, *args], cwd, timeout, env)[1]
