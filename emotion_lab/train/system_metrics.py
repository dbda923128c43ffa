"""CPU, memory and GPU use of a job, sampled every ``tracking.system_metrics_interval_s`` into
MLflow's ``system/`` metrics (the run's System metrics tab).

MLflow's own ``SystemMetricsMonitor`` logs from its thread straight to the store, past the
store lock and the outage buffer of ``RunLogger``. Here a thread only samples (psutil, and
torch for the job's GPU); the samples go out with the job's own writes, through ``RunLogger``:
under the lock, buffered through a server outage, and numbered on after the samples a resumed
run already holds. Only the main process samples (its GPU; the CPU and memory of the machine).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import psutil
import torch
from mlflow.entities import Metric
from mlflow.utils.time import get_current_time_millis

from emotion_lab.config import TrackingConfig
from emotion_lab.store import names
from emotion_lab.store.writer import RunLogger

log = logging.getLogger(__name__)


def cpu_percent(before: Any, after: Any) -> float:
    """The machine's CPU use between two ``psutil.cpu_times()`` (all cores, 0-100)."""
    idle = ("idle", "iowait")
    busy = (
        sum(after) - sum(before) - sum(getattr(after, k, 0) - getattr(before, k, 0) for k in idle)
    )
    total = sum(after) - sum(before)
    return 100.0 * busy / total if total > 0 else 0.0


def sample(device: torch.device | None = None) -> dict[str, float]:
    """One sample: memory in use, and the GPU's (the CPU's needs two readings: ``cpu_percent``)."""
    memory = psutil.virtual_memory()
    values = {
        names.SYSTEM_MEMORY_MB: (memory.total - memory.available) / 2**20,
        names.SYSTEM_MEMORY_PERCENT: memory.percent,
    }
    if device is not None and device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        values[names.SYSTEM_GPU_MEMORY_MB.format(index=index)] = (total - free) / 2**20
        values[names.SYSTEM_GPU_MEMORY_PERCENT.format(index=index)] = 100 * (total - free) / total
        # Utilisation needs NVML (the optional pynvml package).
        with contextlib.suppress(Exception):
            values[names.SYSTEM_GPU_UTILIZATION.format(index=index)] = float(
                torch.cuda.utilization(index)
            )
    return values


class SystemSampler:
    """A thread that samples every ``interval_s`` into a list the job's logger empties."""

    def __init__(self, interval_s: float, device: torch.device | None, first_step: int) -> None:
        self.interval_s = interval_s
        self.device = device
        self._step = first_step
        self._samples: list[Metric] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cpu = psutil.cpu_times()
        # Time spent sampling (in this thread), for the job's records_seconds.
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="system-metrics", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        start = time.perf_counter()
        try:
            cpu = psutil.cpu_times()
            values = {names.SYSTEM_CPU: cpu_percent(self._cpu, cpu), **sample(self.device)}
            self._cpu = cpu
        except Exception as e:  # a sample is never worth a job
            log.warning("System metrics: sampling failed (%s); no more samples.", e)
            self._stop.set()
            return
        now = get_current_time_millis()
        with self._lock:
            self._samples += [Metric(k, v, now, self._step) for k, v in values.items()]
            self._step += 1
        self.seconds += time.perf_counter() - start

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def drain(self) -> list[Metric]:
        with self._lock:
            taken, self._samples = self._samples, []
        return taken

    def stop(self) -> list[Metric]:
        """Stop sampling, after one last sample; returns what was not drained yet."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5)
            self._take()
        return self.drain()


def follow_system_metrics(
    logger: RunLogger, cfg: TrackingConfig, device: torch.device | None
) -> SystemSampler | None:
    """Sample into the logger's run (not on non-main processes, nor with the key off)."""
    if not (cfg.system_metrics and logger.run_id):
        return None
    done = [step for key, step in logger.logged if key == names.SYSTEM_CPU]
    sampler = SystemSampler(cfg.system_metrics_interval_s, device, max(done, default=-1) + 1)
    logger.follow(sampler)
    return sampler
