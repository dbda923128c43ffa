"""Fault injection for the crash tests: SIGKILL this process at a chosen moment, or send it
the signal a person or a scheduler would.

Code that does something a crash could interrupt marks it with ``fault_point(PHASE)``. The
environment variable ``EMOTION_LAB_FAULT`` picks the moment:

- ``PHASE:N`` kills the process with SIGKILL at the N-th ``fault_point(PHASE)`` it reaches;
- ``PHASE:N:DELAY`` kills it DELAY seconds after that point, from a timer thread, so the kill
  lands inside the work that follows (an artifact upload, a file write);
- ``PHASE:N[:DELAY]:SIG`` sends signal SIG (``TERM``, ``INT``, ``USR2``) instead, and
  ``SIG@parent`` sends it to the parent process (the launcher of a distributed job, which
  passes it on to every rank). In a distributed launch only rank 0 sends these;
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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Target:
    phase: str
    n: int
    delay: float = 0.0
    signum: int = signal.SIGKILL
    to_parent: bool = False


def _parse(spec: str) -> _Target | Path:
    head, _, rest = spec.partition(":")
    if head == "count":
        return Path(rest)
    parts = spec.split(":")
    sig, to_parent = "KILL", False
    if len(parts) > 2 and parts[-1][:1].isalpha():
        sig, _, where = parts.pop().partition("@")
        to_parent = where == "parent"
    if len(parts) not in (2, 3) or parts[0] not in PHASES or not hasattr(signal, f"SIG{sig}"):
        raise ValueError(
            f"{ENV}={spec!r}: expected PHASE:N[:DELAY][:SIGNAL[@parent]] with PHASE in {PHASES}"
        )
    delay = float(parts[2]) if len(parts) == 3 else 0.0
    return _Target(parts[0], int(parts[1]), delay, getattr(signal, f"SIG{sig}"), to_parent)


def _send(target: _Target) -> None:
    os.kill(os.getppid() if target.to_parent else os.getpid(), target.signum)


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
    target = _TARGET
    if phase != target.phase or _counts[phase] != target.n:
        return
    if target.signum != signal.SIGKILL and os.environ.get("RANK", "0") != "0":
        return
    if target.delay <= 0:
        _send(target)
        return
    timer = threading.Timer(target.delay, _send, (target,))
    timer.daemon = True
    timer.start()
