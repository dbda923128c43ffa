"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s bench -- --data <dir or hub id>`,
`nox -s faults -- --data <dir or hub id>`."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

# The CPU build of torch; set EMOTION_LAB_TORCH to another spec (e.g. "torch") for a CUDA build.
TORCH = "torch==2.13.0"


def _install(session: nox.Session) -> None:
    import os

    session.install(os.environ.get("EMOTION_LAB_TORCH", TORCH))
    session.install("-e", ".[dev]")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6,<1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Side by side: throughput, whole process, overhead, peak memory and roofline for the
    machine it runs on (docs/benchmarks.md); pass e.g. `-- --data ../shared/data/emotion`."""
    _install(session)
    session.run("python", "benchmarks/bench_train.py", *session.posargs)


@nox.session(python="3.11")
def faults(session: nox.Session) -> None:
    """The seeded fault matrix: SIGKILL a sweep in every phase, and SIGTERM it in every phase,
    resume, compare with an uninterrupted one; pass e.g.
    `-- --data ../shared/data/emotion --points 32 --seed 0`."""
    _install(session)
    session.run("python", "benchmarks/faults.py", *session.posargs)
