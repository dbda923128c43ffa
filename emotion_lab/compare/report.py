"""The compare command's work: read the sweep, group its runs into configurations, compare two
of them on the same test examples, write the report (markdown, CSV, figures), log it to the
sweep's parent run (so it shows in the MLflow UI), optionally register the best model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from emotion_lab.compare import figures
from emotion_lab.compare.budget import BUDGET_METRIC, expected_max_table
from emotion_lab.compare.config import CompareConfig
from emotion_lab.compare.groups import group_markdown_frame, group_table
from emotion_lab.compare.paired import Comparison, choose_pair, compare_pair
from emotion_lab.compare.runs import SweepRuns, read_sweep, read_sweeps
from emotion_lab.compare.search import search_files
from emotion_lab.compare.table import PRUNED, best_row, markdown, run_table
from emotion_lab.errors import TrackingError, UserError, one_line
from emotion_lab.reports import save_figure
from emotion_lab.store import names
from emotion_lab.store.annotate import log_files, register_version
from emotion_lab.store.connection import open_for_reading, ui_address
from emotion_lab.store.reader import (
    SELECTION_RULE,
    Group,
    RunningRun,
    check_safe_weights,
    decided_by,
    group_keys,
    make_groups,
    monitor_of,
    selection_key,
    stale_runs,
)

ARTIFACT_DIR = names.COMPARE_ARTIFACT_DIR
TABLE_MD, TABLE_CSV, GROUPS_CSV = "runs.md", "runs.csv", "groups.csv"
PAIRED_CSV, PER_CLASS_CSV, DISAGREEMENTS_CSV = "paired.csv", "per_class_f1.csv", "disagreements.csv"
BUDGET_CSV = "expected_max.csv"
ACCURACY_PNG, VALIDATION_PNG, TRAIN_LOSS_PNG = "accuracy.png", "val_curves.png", "train_loss.png"
CONFUSION_DIFF_PNG, BUDGET_PNG = "confusion_difference.png", "expected_max.png"


@dataclass
class Report:
    sweep_id: str
    parent_run_id: str
    table: pd.DataFrame
    swept: list[str]
    output_dir: Path
    best: pd.Series | None
    # Which part of the selection rule picked ``best``, in words.
    best_why: str = ""
    # Configurations (every swept key but the seed) and their summary, when seeds were swept.
    groups: pd.DataFrame | None = None
    comparison: Comparison | None = None
    # Why there is no comparison, when there is none.
    comparison_note: str = ""
    # The class names the jobs trained on (their label_names tag), in one line.
    classes: str = ""
    # The MLflow UI's Runs view of this sweep.
    ui_url: str = ""
    registered: ModelVersion | None = None
    # Other sweeps pooled into this report (sweeps=[a,b]).
    pooled: list[str] = field(default_factory=list)
    # The version that held the alias before ``registered`` took it, if one did.
    alias_before: ModelVersion | None = None
    files: list[Path] = field(default_factory=list)
    # Runs of the sweep still RUNNING in MLflow whose heartbeat stopped.
    stale: list[RunningRun] = field(default_factory=list)

    @property
    def failed(self) -> pd.DataFrame:
        return self.table[~self.table.status.isin(["FINISHED", PRUNED])]


def classes_line(sweep: SweepRuns) -> str:
    """The class names of the sweep's jobs, e.g. "Classes (3): anger, fear, joy"; each set
    once when the jobs differ (as in a sweep over data.label_column)."""
    found = [r.data.tags.get(names.LABEL_NAMES_TAG) for r in sweep.jobs]
    sets = list(dict.fromkeys(f for f in found if f))
    if not sets:
        return "Classes: not recorded (no job got as far as reading its data)."
    return "; ".join(f"Classes ({len(s.split(','))}): {s.replace(',', ', ')}" for s in sets)


def _best_why(sweep: SweepRuns, best: pd.Series | None) -> str:
    done = [r for r in sweep.jobs if r.info.status == "FINISHED"]
    if best is None:
        return ""
    keys = [selection_key(r.data.metrics, monitor_of(r)) for r in done]
    chosen = next(i for i, r in enumerate(done) if r.info.run_id == best.run_id)
    return decided_by(keys, chosen, monitor_of(done[chosen]))


def _comparison_md(c: Comparison) -> list[str]:
    paired = c.paired_frame()
    shown = pd.DataFrame(
        {
            "metric": paired["metric"],
            "a": paired["a_mean"],
            "b": paired["b_mean"],
            "a - b": paired["difference"],
            f"{c.level:.0%} CI": [
                f"[{lo:+.4f}, {hi:+.4f}]"
                for lo, hi in zip(paired["ci_low"], paired["ci_high"], strict=True)
            ],
        }
    )
    mcnemar = ", ".join(f"seeds {sa}/{sb}: p = {p:.3g}" for sa, sb, p in c.mcnemar)
    per_class = c.per_class_f1()
    disagreements = c.disagreements()
    return [
        f"## {c.a.label} vs {c.b.label} on the test set",
        "",
        f"**{c.sentence()}**",
        "",
        f"- a = `{c.a.label}`: {c.a.choice.why}; runs {', '.join(c.a.run_ids)}.",
        f"- b = `{c.b.label}`: {c.b.choice.why}; runs {', '.join(c.b.run_ids)}.",
        f"- {len(c.true)} test examples. a and b are each the mean over their runs. The interval "
        f"is a {c.level:.0%} percentile bootstrap interval ({c.resamples} resamples); it covers "
        f"{c.covers}. It does not cover the choice of a and b on validation.",
        f"- McNemar's exact test (accuracy, paired per example, seed-matched run pairs): "
        f"{mcnemar}.",
        "",
        markdown(shown),
        "",
        "### Per-class test F1 (mean over runs)",
        "",
        markdown(per_class),
        "",
        f"![{CONFUSION_DIFF_PNG}]({CONFUSION_DIFF_PNG})",
        "",
        f"### Test examples a and b disagree on (top {len(disagreements)})",
        "",
        "Both most confident first (by the smaller of the two probabilities). A configuration's "
        "label and probability come from its mean class probabilities over its runs.",
        "",
        markdown(disagreements),
        "",
    ]


def _budget_md(curves: pd.DataFrame, key: str) -> list[str]:
    if curves.empty:
        return []
    wide = curves.pivot_table(index="budget", columns=key, values="expected_max", sort=False)
    wide.columns = [f"{key}={v}" for v in wide.columns]
    return [
        f"## Expected best {BUDGET_METRIC} under a tuning budget",
        "",
        "Expected best validation accuracy of n runs drawn at random from each family's runs "
        "(configurations x seeds), by the closed form of Dodge et al. (2019).",
        "",
        # As text, so the budget column reads as whole numbers beside the scores.
        markdown(wide.reset_index().astype({"budget": str})),
        "",
        f"![{BUDGET_PNG}]({BUDGET_PNG})",
        "",
    ]


def _summary(sweep: SweepRuns, report: Report, keys: list[str], curves: pd.DataFrame) -> str:
    table = report.table
    done = int((table.status == "FINISHED").sum())
    pruned = int((table.status == PRUNED).sum())
    lines = [
        f"# Sweep {sweep.sweep_id}",
        "",
        *(
            [f"Pooled with the jobs of sweep(s) {', '.join(sweep.pooled)}.", ""]
            if sweep.pooled
            else []
        ),
        f"Parent run `{sweep.parent.info.run_id}`; {done} finished, "
        + (f"{pruned} pruned by the search, " if pruned else "")
        + f"{len(table) - done - pruned} not finished; "
        f"swept: {', '.join(sweep.swept) or 'nothing'}. Validation numbers are those "
        "of each run's best epoch.",
        "",
        classes_line(sweep) + ".",
        "",
        markdown(table),
        "",
    ]
    if report.groups is not None:
        lines += [
            "## Configurations over seeds",
            "",
            "Each cell: mean ± sample standard deviation [min, max] over the finished runs.",
            "",
            markdown(group_markdown_frame(report.groups, keys)),
            "",
        ]
    best = report.best
    if best is not None:
        lines += [
            f"Best run by validation: job {best.job} `{best.run}` (run `{best.run_id}`), "
            f"val_accuracy {best.val_accuracy:.4f}, test_accuracy {best.test_accuracy:.4f}; "
            f"{report.best_why}. Rule: {SELECTION_RULE}.",
            "",
        ]
    if report.comparison is not None:
        lines += _comparison_md(report.comparison)
    elif report.comparison_note:
        lines += [f"No paired comparison: {report.comparison_note}", ""]
    if keys:
        lines += _budget_md(curves, keys[0])
    lines += [f"![{name}]({name})" for name in (ACCURACY_PNG, VALIDATION_PNG, TRAIN_LOSS_PNG)]
    return "\n".join(lines) + "\n"


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def write_files(sweep: SweepRuns, report: Report) -> list[Path]:
    out = report.output_dir
    out.mkdir(parents=True, exist_ok=True)
    table = report.table
    keys = group_keys(sweep.swept)
    curves = expected_max_table(table, keys[0]) if keys else pd.DataFrame()
    (out / TABLE_MD).write_text(_summary(sweep, report, keys, curves))
    labels = figures.run_labels(table, sweep.swept)
    title = f"sweep {sweep.sweep_id}"
    seeds = report.groups is not None
    files = [
        out / TABLE_MD,
        _csv(table, out / TABLE_CSV),
        save_figure(figures.accuracy_figure(table, keys, seeds, title), out / ACCURACY_PNG),
        save_figure(figures.validation_figure(sweep.history, labels, title), out / VALIDATION_PNG),
        save_figure(figures.train_loss_figure(sweep.history, labels, title), out / TRAIN_LOSS_PNG),
    ]
    if report.groups is not None:
        files.append(_csv(report.groups, out / GROUPS_CSV))
    c = report.comparison
    if c is not None:
        files += [
            _csv(c.paired_frame(), out / PAIRED_CSV),
            _csv(c.per_class_f1(), out / PER_CLASS_CSV),
            _csv(c.disagreements(), out / DISAGREEMENTS_CSV),
            save_figure(
                figures.confusion_difference_figure(
                    c.confusion_difference(), c.label_names, c.a.label, c.b.label
                ),
                out / CONFUSION_DIFF_PNG,
            ),
        ]
    if keys:
        files += [
            _csv(curves, out / BUDGET_CSV),
            save_figure(figures.expected_max_figure(curves, keys[0], title), out / BUDGET_PNG),
        ]
    return files


def _label_names(groups: list[Group]) -> list[str]:
    for group in groups:
        for run in group.finished:
            if names.LABEL_NAMES_TAG in run.data.tags:
                return run.data.tags[names.LABEL_NAMES_TAG].split(",")
    raise TrackingError("no finished run of the compared configurations records its label names.")


def _compare_two(
    client: MlflowClient, groups: list[Group], keys: list[str], cfg: CompareConfig
) -> tuple[Comparison | None, str]:
    """The paired comparison, or why there is none. Named configurations that cannot be
    compared are an error; the default pair is skipped with its reason."""
    try:
        pair = choose_pair(groups, keys, cfg)
        return compare_pair(client, pair, _label_names([c.group for c in pair]), cfg), ""
    except UserError as e:
        if cfg.a:
            raise
        return None, one_line(e)


def register_best(
    client: MlflowClient, best: pd.Series | None, cfg: CompareConfig, sweep_id: str
) -> tuple[ModelVersion, ModelVersion | None]:
    """A new version of registered model ``cfg.registered_model``, pointing at the best run's
    ``model/``, given the alias ``cfg.alias``; and the version that held the alias before."""
    if best is None:
        raise TrackingError(f"register=true: sweep {sweep_id} has no finished run to register.")
    if names.MODEL_ARTIFACT not in {a.path for a in client.list_artifacts(best.run_id)}:
        raise TrackingError(
            f"register=true: the best run {best.run_id} has no model/ artifact "
            "(it was trained with tracking.log_model=false)."
        )
    check_safe_weights(client, best.run_id)
    return register_version(
        client,
        cfg.registered_model,
        source=f"{client.get_run(best.run_id).info.artifact_uri}/{names.MODEL_ARTIFACT}",
        run_id=best.run_id,
        tags={
            names.SWEEP_TAG: sweep_id,
            "selected_by": SELECTION_RULE,
            names.VAL_ACCURACY: f"{best[names.VAL_ACCURACY]:.4f}",
            names.TEST_ACCURACY: f"{best[names.TEST_ACCURACY]:.4f}",
        },
        alias=cfg.alias or None,
        max_outage_s=cfg.tracking.max_outage_s,
    )


def compare(cfg: CompareConfig) -> Report:
    client, experiment = open_for_reading(cfg.tracking)
    if cfg.sweeps:
        sweep = read_sweeps(client, experiment.experiment_id, cfg.sweeps)
    else:
        sweep = read_sweep(client, experiment.experiment_id, cfg.sweep)
    table = run_table(sweep)
    keys = group_keys(sweep.swept)
    groups = make_groups(sweep.jobs, keys)
    out = Path(cfg.output_dir or Path(cfg.paths.outputs) / "compare" / sweep.sweep_id)
    best = best_row(sweep, table)
    comparison, note = _compare_two(client, groups, keys, cfg)
    parent_id = sweep.parent.info.run_id
    report = Report(
        sweep_id=sweep.sweep_id,
        parent_run_id=parent_id,
        table=table,
        swept=sweep.swept,
        output_dir=out,
        best=best,
        best_why=_best_why(sweep, best),
        groups=group_table(table, keys) if names.SEED_PARAM in sweep.swept else None,
        comparison=comparison,
        comparison_note=note,
        pooled=sweep.pooled,
        classes=classes_line(sweep),
        ui_url=names.sweep_runs_url(
            ui_address(client.tracking_uri), experiment.experiment_id, sweep.sweep_id
        ),
    )
    report.files = write_files(sweep, report)
    report.files += search_files(sweep.parent, out, cfg.search_storage)
    log_files(client, parent_id, report.files, ARTIFACT_DIR, cfg.tracking.max_outage_s)
    ours = {sweep.parent.info.run_id, *(r.info.run_id for r in sweep.jobs)}
    report.stale = [
        r for r in stale_runs(client, experiment.experiment_id) if r.run.info.run_id in ours
    ]
    if cfg.register:
        report.registered, report.alias_before = register_best(
            client, report.best, cfg, sweep.sweep_id
        )
    return report
