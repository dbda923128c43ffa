"""The work of ``python -m emotion_lab.runs``: RUNNING runs with their heartbeat age, and
marking stale ones KILLED."""

from __future__ import annotations

from mlflow.entities import RunStatus

from emotion_lab.config import TrackingConfig
from emotion_lab.errors import TrackingError
from emotion_lab.store import names
from emotion_lab.store.connection import open_for_reading, store_lock
from emotion_lab.store.reader import RunningRun, get_run, running_runs

MARK_KILLED = "python -m emotion_lab.runs mark-killed"


def _line(r: RunningRun) -> str:
    tags = r.run.data.tags
    role = tags.get(names.ROLE_TAG, "?")
    where = f"sweep {tags[names.SWEEP_TAG]}" if names.SWEEP_TAG in tags else "single job"
    if names.JOB_NUM_TAG in tags:
        where += f" job {tags[names.JOB_NUM_TAG]}"
    return f"  {r.run.info.run_id}  {role:<5}  {r.run.info.run_name}  ({where}): {r.describe()}"


def list_running(tracking: TrackingConfig, stale_after_s: float) -> str:
    client, experiment = open_for_reading(tracking)
    found = running_runs(client, experiment.experiment_id, stale_after_s)
    if not found:
        return f"No RUNNING runs in experiment {experiment.name}."
    lines = [f"RUNNING runs in experiment {experiment.name} ({client.tracking_uri}):"]
    lines += [_line(r) for r in found]
    stale = [r for r in found if r.stale]
    if stale:
        lines.append(
            f"{len(stale)} stale. Once you know they run nowhere (a shared server's jobs may run "
            f"on other machines), close them with `{MARK_KILLED} RUN_ID ...` or "
            f"`{MARK_KILLED} --stale`."
        )
    return "\n".join(lines)


def mark_killed(
    tracking: TrackingConfig,
    run_ids: list[str],
    all_stale: bool,
    force: bool,
    stale_after_s: float,
) -> str:
    """Mark the named runs (and with ``all_stale`` every stale run) KILLED; refuses, before
    changing any, a run that is not RUNNING or, without ``force``, one with a recent heartbeat."""
    client, experiment = open_for_reading(tracking)
    if not run_ids and not all_stale:
        raise TrackingError(f"{MARK_KILLED}: name the runs (RUN_ID ...) or pass --stale.")
    running = {
        r.run.info.run_id: r for r in running_runs(client, experiment.experiment_id, stale_after_s)
    }
    chosen = [r for r in running.values() if r.stale] if all_stale else []
    for run_id in run_ids:
        if run_id not in running:
            run = get_run(client, run_id)
            raise TrackingError(
                f"run {run_id} ({run.info.run_name}) is {run.info.status}, not RUNNING: "
                "there is nothing to mark."
            )
        r = running[run_id]
        if not r.stale and not force:
            raise TrackingError(
                f"run {run_id} ({r.run.info.run_name}) sent a heartbeat {r.silence} ago: it is "
                "probably still running, here or on another machine. Stop it there, or pass "
                "--force."
            )
        if r not in chosen:
            chosen.append(r)
    if not chosen:
        return "No stale runs to mark KILLED."
    with store_lock(client.tracking_uri):
        for r in chosen:
            reason = f"marked KILLED by the user after {r.silence} without a heartbeat"
            client.set_tag(r.run.info.run_id, names.ERROR_TAG, reason)
            client.set_terminated(r.run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
    lines = [f"Marked KILLED: {r.run.info.run_id} ({r.run.info.run_name})" for r in chosen]
    lines.append("Rerun their command with resume=true to continue them from their checkpoints.")
    return "\n".join(lines)
