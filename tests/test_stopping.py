"""When a stop signal takes effect: at the next step boundary while a job trains (a second
signal changes nothing), at once elsewhere, never while the process leaves for another reason."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from emotion_lab import stopping
from emotion_lab.stopping import Stopped

ONE_PROCESS = SimpleNamespace(num_processes=1)


@pytest.fixture(autouse=True)
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process handles SIGTERM and SIGINT as a command does, from a fresh state."""
    monkeypatch.setattr(stopping, "_state", stopping._State())
    saved = {s: signal.getsignal(s) for s in stopping.STOP_SIGNALS}
    stopping.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _signal(signum: int = signal.SIGTERM) -> None:
    """Deliver ``signum`` to this process; the handler runs before this returns."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)


def test_a_signal_while_training_waits_for_the_step_and_a_second_one_changes_nothing():
    with stopping.deferred():
        assert stopping.requested(ONE_PROCESS, 3) is None
        _signal()  # mid-step
        _signal(signal.SIGINT)  # a second Ctrl-C during the checkpoint write
        assert stopping.requested(ONE_PROCESS, 4) == signal.SIGTERM  # the first one counts
        assert stopping.requested(ONE_PROCESS, 5) is None  # taken once
    # Leaving the section raises nothing more: the loop raised its own Stopped.


def test_a_signal_outside_training_stops_at_once():
    with pytest.raises(Stopped) as stop:
        _signal(signal.SIGINT)
    assert stop.value.signum == signal.SIGINT
    assert stop.value.line() == "stopped by SIGINT before training: rerun with resume=true"


def test_a_signal_in_a_section_that_does_not_ask_stops_at_its_end():
    stopping.requested(ONE_PROCESS, 12)
    with pytest.raises(Stopped) as stop, stopping.deferred():
        _signal()
        done = True  # the section's work is not interrupted
    assert done
    assert stop.value.tag() == "SIGTERM at step 12"
    line = "stopped by SIGTERM at step 12 (checkpoint kept): rerun with resume=true"
    assert stop.value.line() == line


def test_signals_on_the_way_out_change_nothing():
    stopping.exiting()  # e.g. after a failed job, while the sweep's parent run is closed
    _signal()
    with stopping.deferred():
        _signal()
    assert stopping.received() is None  # the parent is closed for the failure, not the signal


def test_stoppable_exits_with_128_plus_the_signal_and_one_line(capsys: pytest.CaptureFixture):
    def main() -> None:
        with stopping.deferred():
            _signal()
            stopping.requested(ONE_PROCESS, 7)
            raise Stopped(signal.SIGTERM, 7)

    with pytest.raises(SystemExit) as exit_:
        stopping.stoppable(main, speaks=lambda: True)()
    assert exit_.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err.splitlines() == [
        "emotion_lab: stopped by SIGTERM at step 7 (checkpoint kept): rerun with resume=true"
    ]
