"""``python -m emotion_lab.runs`` lists RUNNING runs, stale or alive;
``python -m emotion_lab.runs mark-killed RUN_ID ... | --stale`` marks stale ones KILLED.

Marking is never automatic: on a shared tracking server a silent run may be alive on another
machine, so only a person who knows it is not can close it.
"""

from __future__ import annotations

import argparse
import sys

from emotion_lab.config import TrackingConfig
from emotion_lab.reporting import report_error
from emotion_lab.store.names import STALE_AFTER_S

VERBS = ("list", "mark-killed")


def parser() -> argparse.ArgumentParser:
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--tracking-uri",
        default=TrackingConfig.uri,
        help="the MLflow store, as tracking.uri for training (default %(default)s)",
    )
    store.add_argument("--experiment", default=TrackingConfig.experiment, help="(%(default)s)")
    store.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_S / 60,
        metavar="MINUTES",
        help="a RUNNING run without a heartbeat for this long is stale (default %(default)g)",
    )
    store.add_argument("--debug", action="store_true", help="full tracebacks")
    main = argparse.ArgumentParser(
        prog="python -m emotion_lab.runs",
        description="RUNNING runs of an MLflow experiment: alive, or stale (probably killed).",
        epilog="Without a verb: list. `python -m emotion_lab.runs VERB --help` shows the options.",
    )
    verbs = main.add_subparsers(dest="verb")
    verbs.add_parser("list", parents=[store], help="list RUNNING runs (the default)")
    mark = verbs.add_parser(
        "mark-killed",
        parents=[store],
        help="mark stale runs KILLED (a resume=true rerun continues them)",
    )
    mark.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    mark.add_argument("--stale", action="store_true", help="every stale run of the experiment")
    mark.add_argument(
        "--force", action="store_true", help="also runs whose heartbeat is recent (alive?)"
    )
    return main


def main(argv: list[str] | None = None) -> None:
    from emotion_lab.runs.status import list_running, mark_killed

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*VERBS, "-h", "--help"):
        argv = ["list", *argv]
    args = parser().parse_args(argv)
    tracking = TrackingConfig(uri=args.tracking_uri, experiment=args.experiment)
    stale_after_s = args.stale_after * 60
    try:
        if args.verb == "mark-killed":
            print(mark_killed(tracking, args.run_ids, args.stale, args.force, stale_after_s))
        else:
            print(list_running(tracking, stale_after_s))
    except Exception as e:
        report_error(e, args.debug)
        sys.exit(1)
