"""The provenance of a run, read from real git repositories made in a temp dir; and the rules
that compare runs' data by digest, on real MLflow entities."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from mlflow.entities import Dataset, DatasetInput, InputTag, Run, RunData, RunInfo, RunInputs

from emotion_lab.compare.paired import check_same_test_data
from emotion_lab.errors import DataError, TrackingError
from emotion_lab.store import names, provenance
from emotion_lab.store.datasets import check_same_data


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "code"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "study")
    _git(repo, "config", "user.email", "a@example.org")
    _git(repo, "config", "user.name", "A")
    (repo / "train.py").write_text("lr = 1e-5\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_a_clean_checkout_gives_its_commit_and_branch(repo: Path):
    state = provenance.git_state(repo)
    assert state.commit == _git(repo, "rev-parse", "HEAD")
    assert state.branch == "study"
    assert not state.dirty and state.diff == "" and state.missing is None


def test_an_edited_checkout_is_dirty_with_its_diff(repo: Path):
    (repo / "train.py").write_text("lr = 5e-5\n")
    state = provenance.git_state(repo)
    assert state.dirty
    assert "-lr = 1e-5" in state.diff and "+lr = 5e-5" in state.diff


def test_a_detached_head_has_no_branch(repo: Path):
    _git(repo, "checkout", "-q", "--detach")
    state = provenance.git_state(repo)
    assert state.commit == _git(repo, "rev-parse", "HEAD") and state.branch is None


def test_code_outside_git_says_so_and_does_not_fail(tmp_path: Path):
    state = provenance.git_state(tmp_path)
    assert state.commit is None
    assert state.missing is not None and "not a git repository" in state.missing


def test_the_tags_name_the_commit_command_and_versions():
    tags = provenance.source_tags("emotion_lab")
    assert tags[names.SOURCE_NAME_TAG] == "python -m emotion_lab"
    assert (names.GIT_COMMIT_TAG in tags) != (names.GIT_MISSING_TAG in tags)
    for package in ("python", *provenance.PACKAGES):
        assert tags[names.VERSION_TAG.format(package=package)]


def test_a_resume_at_another_commit_warns_in_one_line(caplog: pytest.LogCaptureFixture):
    before = {names.GIT_COMMIT_TAG: "a" * 40}
    now = {names.GIT_COMMIT_TAG: "b" * 40}
    with caplog.at_level(logging.WARNING):
        tags = provenance.resumed_tags(before, now)
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "a" * 40 in record.getMessage()
    assert tags[names.GIT_COMMIT_TAG] == "b" * 40
    assert tags[names.GIT_COMMIT_BEFORE_TAG] == "a" * 40
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert provenance.resumed_tags(now, now) == now
    assert caplog.records == []


def _input(context: str, digest: str) -> DatasetInput:
    dataset = Dataset("emotion-test", digest, "hugging_face", "{}")
    return DatasetInput(dataset, [InputTag(names.DATASET_CONTEXT_TAG, context)])


def _run(run_id: str, *inputs: DatasetInput) -> Run:
    info = RunInfo(run_id, "0", "", "FINISHED", 0, 1, "active", run_name=run_id)
    return Run(info, RunData(), RunInputs(list(inputs)))


def test_resume_refuses_changed_data_in_one_line_unless_allowed():
    run = _run("r1", _input("training", "aaaa"), _input("testing", "tttt"))
    same = [_input("training", "aaaa"), _input("testing", "tttt")]
    check_same_data(run, same, allowed=False)
    edited = [_input("training", "bbbb"), _input("testing", "tttt")]
    with pytest.raises(DataError) as caught:
        check_same_data(run, edited, allowed=False)
    message = str(caught.value)
    assert "\n" not in message and "resume_changed_data=true" in message and "bbbb" in message
    check_same_data(run, edited, allowed=True)


def test_paired_statistics_refuse_runs_tested_on_different_data():
    check_same_test_data([_run("r1", _input("testing", "t1")), _run("r2", _input("testing", "t1"))])
    # A run logged before dataset inputs existed has no digest: its predictions are checked.
    check_same_test_data([_run("r1", _input("testing", "t1")), _run("old")])
    with pytest.raises(TrackingError, match="different test data"):
        check_same_test_data(
            [_run("r1", _input("testing", "t1")), _run("r2", _input("testing", "t2"))]
        )
