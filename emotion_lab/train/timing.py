"""Where a job's time goes: seconds per phase, logged at the job's end as ``<phase>_seconds``.

The phases (``names.PHASES``) cover the job from its start to its last log; training and
evaluation compute are the ``train_seconds`` and the validation and test throughputs the job
logs besides, so the rest of each phase is overhead (broken down in docs/benchmarks.md).
"""

from __future__ import annotations

import time

from emotion_lab.store import names


class Stopwatch:
    """Laps of one job: ``lap(phase)`` charges the time since the previous lap to ``phase``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        assert phase in names.PHASES, phase
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now

    def metrics(self) -> dict[str, float]:
        return {names.phase_metric(phase): s for phase, s in self.seconds.items()}
