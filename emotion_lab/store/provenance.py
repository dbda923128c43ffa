"""Which code ran a run: the git commit, branch and dirty flag of the checkout the package was
imported from (MLflow's own ``mlflow.source.*`` tags, so the UI's Source column shows them),
the command line, and the versions of the packages that matter for the numbers.

``MlflowClient.create_run`` sets none of these (fluent ``start_run`` would), so every job and
sweep run gets them here. Outside a git repository, or without git, a tag says so; finding the
provenance never fails a run.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from emotion_lab.errors import one_line
from emotion_lab.store import names

log = logging.getLogger(__name__)

# The distributions whose versions each run records (python's own is added).
PACKAGES = ("torch", "transformers", "datasets", "accelerate", "mlflow", "emotion-lab")
# The checkout the package is imported from: the code that runs, wherever the command runs.
CODE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GitState:
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    # ``git diff HEAD`` when dirty.
    diff: str = ""
    repo_url: str | None = None
    # Why there is no commit, when there is none.
    missing: str | None = None


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"git {args[0]} failed")
    return done.stdout.strip()


def git_state(folder: Path) -> GitState:
    """The git state of the checkout holding ``folder``; never raises."""
    try:
        commit = _git(folder, "rev-parse", "HEAD")
    except FileNotFoundError:
        return GitState(missing="git is not installed")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return GitState(missing=f"not a git repository ({folder}): {one_line(e)[:200]}")
    try:
        branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
        diff = _git(folder, "diff", "HEAD") if status else ""
        try:
            url = _git(folder, "remote", "get-url", "origin") or None
        except RuntimeError:
            url = None
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log.warning("Reading the git state of %s failed: %s", folder, one_line(e)[:200])
        return GitState(commit=commit)
    return GitState(commit, None if branch == "HEAD" else branch, bool(status), diff, url)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def command_line() -> str:
    """The command as it was typed (``python -m emotion_lab -m lr=1e-5,5e-5 ...``)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    argv[0] = Path(argv[0]).name
    return shlex.join(argv)


@cache
def _state() -> GitState:
    # Once per process: the code imported at the start is the code that runs.
    return git_state(CODE_ROOT)


def source_tags(module: str) -> dict[str, str]:
    """The provenance tags of a run made by ``python -m <module>``."""
    state = _state()
    tags = {
        names.SOURCE_NAME_TAG: f"python -m {module}",
        names.SOURCE_TYPE_TAG: "LOCAL",
        names.COMMAND_TAG: command_line()[:5000],
    }
    with contextlib.suppress(KeyError, OSError):
        tags[names.USER_TAG] = getpass.getuser()
    if state.commit is None:
        tags[names.GIT_MISSING_TAG] = state.missing or "unknown"
    else:
        tags[names.GIT_COMMIT_TAG] = state.commit
        tags[names.GIT_DIRTY_TAG] = str(state.dirty).lower()
        if state.branch:
            tags[names.GIT_BRANCH_TAG] = state.branch
        if state.repo_url:
            tags[names.GIT_REPO_URL_TAG] = state.repo_url
    for package, version in versions().items():
        tags[names.VERSION_TAG.format(package=package)] = version
    return tags


def uncommitted_diff() -> str:
    """The diff of a dirty checkout (empty when clean), for the run's source artifact."""
    return _state().diff


def resumed_tags(before: dict[str, str], now: dict[str, str]) -> dict[str, str]:
    """Tags a resumed run takes: the current provenance, and the commit it started at when the
    commit differs (with a one-line warning)."""
    old, new = before.get(names.GIT_COMMIT_TAG), now.get(names.GIT_COMMIT_TAG)
    tags = dict(now)
    if old != new:
        log.warning(
            "resume=true: this run started at commit %s and continues at %s; its numbers mix "
            "the two versions of the code.",
            old or "(none)",
            new or "(none)",
        )
        tags[names.GIT_COMMIT_BEFORE_TAG] = old or "(none)"
    return tags
