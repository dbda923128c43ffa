"""Hydra entry point: ``python -m emotion_lab.compare sweep=<id>|latest [register=true]``."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from emotion_lab import options
from emotion_lab.compare.config import CompareConfig, register_schema
from emotion_lab.config import CONFIG_DIR
from emotion_lab.reporting import report_error

register_schema()
options.register_resolver()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="compare")
def main(dcfg: DictConfig) -> None:
    from emotion_lab.compare.groups import group_markdown_frame
    from emotion_lab.compare.report import compare
    from emotion_lab.compare.table import markdown
    from emotion_lab.store.reader import SELECTION_RULE, group_keys

    try:
        cfg: CompareConfig = OmegaConf.to_object(dcfg)  # type: ignore[assignment]
        report = compare(cfg)
    except Exception as e:
        report_error(e, bool(dcfg.get("debug", False)))
        sys.exit(1)
    # The run name repeats the swept values; the files keep it.
    shown = report.table.drop(columns=["run", *(["error"] if report.failed.empty else [])])
    pooled = f"; pooled with sweep(s) {', '.join(report.pooled)}" if report.pooled else ""
    print(
        f"\nSweep {report.sweep_id} (parent run {report.parent_run_id}{pooled})\n"
        f"{markdown(shown)}\n"
    )
    print(report.classes)
    if report.groups is not None:
        keys = group_keys(report.swept)
        print(
            "Configurations over seeds: mean ± std [min, max]\n"
            f"{markdown(group_markdown_frame(report.groups, keys))}\n"
        )
    if report.best is not None:
        b = report.best
        print(
            f"Best run by validation: job {b.job} {b.run}  val_accuracy {b.val_accuracy:.4f}  "
            f"test_accuracy {b.test_accuracy:.4f}  run_id {b.run_id}\n"
            f"  ({report.best_why}; rule: {SELECTION_RULE})"
        )
    c = report.comparison
    if c is not None:
        print(
            f"\nCompared a = {c.a.label}: {c.a.choice.why}\n"
            f"     and b = {c.b.label}: {c.b.choice.why}\n"
            f"{c.sentence()}\nThe interval covers {c.covers}."
        )
    elif report.comparison_note:
        print(f"\nNo paired comparison: {report.comparison_note}")
    if not report.failed.empty:
        print(f"{len(report.failed)} run(s) did not finish; see the status and error columns.")
    for stale in report.stale:
        run = stale.run
        print(f"RUNNING run {run.info.run_id} ({run.info.run_name}): {stale.describe()}")
    print(f"Wrote {', '.join(p.name for p in report.files)} to {report.output_dir}")
    print("Logged them to the sweep's parent run under compare/ (MLflow UI: Artifacts tab).")
    print(f"Runs of this sweep in the MLflow UI: {report.ui_url}")
    if report.registered is not None:
        v = report.registered
        print(f"Registered model {v.name!r} version {v.version} from run {v.run_id}.")
        if dcfg.alias:
            before = report.alias_before
            held = f"version {before.version} held it before" if before else "no version held it"
            print(f"Alias @{dcfg.alias} now points at version {v.version} ({held}).")
