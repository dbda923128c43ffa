"""Polite stops: SIGTERM, SIGINT (Ctrl-C) and a submitit job's preemption signal end a job at an
optimizer step, with a checkpoint at that step, instead of killing it wherever it is.

Whoever sends SIGTERM gives the job time to stop: SLURM waits KillWait (30 s by default) before
SIGKILL, ``docker stop`` 10 s. While the job trains, the handler only notes the signal; the loop
asks ``requested`` after each optimizer step (and after each epoch's checkpoint, validation
included), writes a checkpoint at that step and raises ``Stopped``. Outside training (loading,
testing, uploading) there is no step to finish: the handler raises ``Stopped`` at once and the
last checkpoint is what a resume starts from. Inside ``deferred`` sections (training, closing a
run) a signal is only noted, and so are further signals: a second Ctrl-C during a checkpoint
write cannot break it. Once the process is ``exiting`` (a failed job, the end of the command),
signals are ignored: a process closing its runs on the way out finishes that.

``Stopped`` unwinds the job: its run is closed KILLED with the ``stopped_by`` tag, the sweep's
parent run closed, and ``stoppable`` prints one line and exits with 128 + the signal's number.

Ranks of a distributed launch agree on the step: after each optimizer step every rank tells the
others whether it was signalled (a one-number all-reduce on a CPU process group of its own), so
all of them stop at the same step and write one consistent checkpoint. A signalled rank waits at
most ``AGREE_TIMEOUT_S`` for the others: a peer that is gone or stuck does not make it hang until
SIGKILL; it stops without a new checkpoint.

Inside a submitit job submitit owns the signals: it ignores SIGTERM and, on its preemption
signal (USR2), checkpoints the submission and requeues the job. That handler stays submitit's;
``defer_submitit_signal`` only delays it to the same step boundary, where the job saves and
closes its run first, and ``hand_to_submitit`` then calls it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any, NoReturn

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a signalled rank waits for the others to agree on the step.
AGREE_TIMEOUT_S = 10.0
# How long a rank leaving on a failed job waits for the others to leave too.
PART_TIMEOUT_S = 60.0
# The side group's own timeout: polls of ranks that were not signalled wait as long as a
# training collective would.
_GROUP_TIMEOUT = timedelta(minutes=30)


class Stopped(BaseException):
    """A job stopped by a signal. A BaseException, as KeyboardInterrupt is: the handlers that
    record a failed job (``except Exception``) let it through."""

    def __init__(self, signum: int, step: int | None, saved: bool = True, why: str = "") -> None:
        self.signum, self.step, self.saved, self.why = signum, step, saved, why
        self.run_id: str | None = None  # the job's MLflow run, once it is closed
        super().__init__(self.line())

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def by_submitit(self) -> bool:
        return _state.submitit_handler is not None and self.signum == _submitit_signal()

    def tag(self) -> str:
        """The run's ``stopped_by`` tag: which signal, at which step."""
        at = "before training" if self.step is None else f"at step {self.step}"
        return f"{self.signal_name} {at}"

    def line(self) -> str:
        if self.step is None:
            return f"stopped by {self.signal_name} before training: rerun with resume=true"
        kept = "checkpoint kept" if self.saved else f"no checkpoint at this step: {self.why}"
        return f"stopped by {self.signal_name} at step {self.step} ({kept}): rerun with resume=true"


@dataclass
class _State:
    signum: int | None = None  # the first stop signal received
    acted: bool = False  # a Stopped was raised for it (or the loop took it)
    deferring: int = 0  # depth of deferred() sections
    exiting: bool = False
    step: int | None = None  # the last optimizer step a poll saw
    group: Any = None  # the ranks' side group (torch.distributed), once made
    submitit_handler: Callable[[int, FrameType | None], Any] | None = None


_state = _State()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.signum is not None or _state.exiting:
        # Already stopping, or leaving for another reason: what is under way (a checkpoint,
        # closing runs) goes on.
        return
    _state.signum = signum
    if not _state.deferring:
        _state.acted = True
        raise Stopped(signum, _state.step)


def install() -> None:
    """Handle SIGTERM and SIGINT in this process (the command's entry point calls it)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)


def _submitit_signal() -> int:
    from submitit import JobEnvironment

    return JobEnvironment._usr_sig()


def defer_submitit_signal() -> None:
    """Inside a submitit job: submitit's preemption handler waits for the step boundary."""
    signum = _submitit_signal()
    handler = signal.getsignal(signum)
    if callable(handler) and handler is not _on_signal:
        _state.submitit_handler = handler
        signal.signal(signum, _on_signal)


def hand_to_submitit(stop: Stopped) -> NoReturn:
    """Let submitit do what its signal asks, now that the job saved and closed its run: it
    requeues the job and exits, or raises ``UncompletedJobError`` (no requeue left). On a rank
    other than 0 it does nothing, and this rank exits."""
    assert _state.submitit_handler is not None
    _state.submitit_handler(stop.signum, None)
    raise SystemExit(128 + stop.signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section no signal interrupts: a signal received in it is acted on by a poll inside it
    (``requested``), or else raised as ``Stopped`` when the outermost section ends."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if _state.deferring or _state.exiting or _state.signum is None or _state.acted:
        return
    _state.acted = True
    raise Stopped(_state.signum, _state.step)


def exiting() -> None:
    """The process is on its way out (a failed job, the end of the command): signals from now
    on are ignored, so that what closes runs on the way out (atexit hooks) finishes."""
    _state.exiting = True


def received() -> int | None:
    """The signal that stopped this process, if one did."""
    return _state.signum if _state.acted else None


def prepare(accelerator: Any) -> None:
    """At a job's start. Makes the ranks' side group, once per process: every rank calls this
    where they are in step (making a group is itself a collective)."""
    import torch.distributed as dist

    _state.step = None  # a new job: no step of its own yet
    if accelerator.num_processes > 1 and _state.group is None:
        try:
            _state.group = dist.new_group(backend="gloo", timeout=_GROUP_TIMEOUT)
        except (RuntimeError, ValueError):  # no gloo (an MPI launch): the default group
            _state.group = dist.group.WORLD


def part_together(timeout_s: float = PART_TIMEOUT_S) -> None:
    """A rank leaving a distributed launch on a failed job waits, up to ``timeout_s``, until
    every rank leaves: the launcher stops the others (SIGTERM) as soon as one exits, and rank 0
    may still be recording the failed job. From here on, signals are only noted."""
    import torch.distributed as dist

    exiting()
    if _state.group is None:
        return
    # A rank that is gone or stuck (or a group without monitored barriers): leave all the same.
    with contextlib.suppress(RuntimeError, ValueError):
        dist.monitored_barrier(group=_state.group, timeout=timedelta(seconds=timeout_s))


def requested(accelerator: Any, step: int) -> int | None:
    """Every rank, after each optimizer step: the stop signal all ranks agree on, or None.

    Raises ``Stopped`` without a new checkpoint if this rank was signalled and another rank
    did not answer within ``AGREE_TIMEOUT_S``.
    """
    _state.step = step
    local = None if _state.acted else _state.signum
    signum = local if accelerator.num_processes == 1 else _agree(local, step)
    if signum:
        _state.signum, _state.acted = _state.signum or signum, True
    return signum or None


def _agree(local: int | None, step: int) -> int:
    import torch
    import torch.distributed as dist

    flag = torch.tensor([local or 0], dtype=torch.int64)
    work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_state.group, async_op=True)
    if local is None:
        work.wait()
        return int(flag.item())
    try:
        work.wait(timeout=timedelta(seconds=AGREE_TIMEOUT_S))
    except RuntimeError:
        _state.acted = True
        why = f"another rank did not answer within {AGREE_TIMEOUT_S:g} s"
        raise Stopped(local, step, saved=False, why=why) from None
    return int(flag.item())


def stoppable(main: Callable[[], object], speaks: Callable[[], bool]) -> Callable[[], None]:
    """``main`` with the stop signals handled: a ``Stopped`` ends the process with one line
    (from the process that ``speaks``: rank 0 of a distributed launch) and 128 + its signal."""

    def run() -> None:
        install()
        try:
            main()
        except Stopped as stop:
            if speaks():
                print(f"emotion_lab: {stop.line()}", file=sys.stderr, flush=True)
            raise SystemExit(128 + stop.signum) from None
        finally:
            exiting()

    return run
