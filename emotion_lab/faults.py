"""Fault injection for the crash tests: SIGKILL this process at a chosen moment.

Code that does something a crash could interrupt marks it with ``fault_point(PHASE)``. The
environment variable ``EMOTION_LAB_FAULT`` picks the moment:

- ``PHASE:N`` kills the process with SIGKILL at the N-th ``fault_point(PHASE)`` it reaches;
- ``PHASE:N:DELAY`` kills it DELAY seconds after that point, from a timer thread, so the kill
  lands inside the work that follows (an artifact upload, a file write);
- ``count:FILE`` kills nothing and writes, at exit, how many points of each phase the process
  reached to FILE (JSON), so a test can pick N within range.

Unset (always, outside tests), ``fault_point`` returns at its first comparison.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path

ENV = "EMOTION_LAB_FAULT"

# Every phase that has fault points, in the order a sweep goes through them.
PHASES = (
    "sweep_start",
    "train_step",
    "checkpoint_write",
    "validation",
    "test",
    "model_artifact",
    "between_jobs",
    "sweep_end",
)

_SPEC = os.environ.get(ENV) or None
_counts: Counter[str] = Counter()


def _parse(spec: str) -> tuple[str, int, float] | Path:
    head, _, rest = spec.partition(":")
    if head == "count":
        return Path(rest)
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in PHASES:
        raise ValueError(f"{ENV}={spec!r}: expected PHASE:N[:DELAY] with PHASE in {PHASES}")
    return parts[0], int(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _write_counts(path: Path) -> None:
    path.write_text(json.dumps(dict(_counts), indent=2))


_TARGET = None if _SPEC is None else _parse(_SPEC)
if isinstance(_TARGET, Path):
    atexit.register(_write_counts, _TARGET)


def fault_point(phase: str) -> None:
    """Mark a moment of ``phase`` where a crash may strike (see the module docstring)."""
    if _TARGET is None:
        return
    _counts[phase] += 1
    if isinstance(_TARGET, Path):
        return
    target, n, delay = _TARGET
    if phase != target or _counts[phase] != n:
        return
    if delay <= 0:
        _kill()
    timer = threading.Timer(delay, _kill)
    timer.daemon = True
    timer.start()
