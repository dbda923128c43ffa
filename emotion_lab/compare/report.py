"""The compare command's work: read the sweep, write the table and figures, log them to the
sweep's parent run (so they show in the MLflow UI), optionally register the best model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from emotion_lab.compare import figures
from emotion_lab.compare.config import CompareConfig
from emotion_lab.compare.runs import SweepRuns, read_sweep
from emotion_lab.compare.table import best_row, markdown, run_table
from emotion_lab.errors import TrackingError
from emotion_lab.store import names
from emotion_lab.store.connection import open_for_reading, ui_address
from emotion_lab.store.reader import SELECTION_RULE, check_safe_weights

ARTIFACT_DIR = names.COMPARE_ARTIFACT_DIR
TABLE_MD, TABLE_CSV = "runs.md", "runs.csv"
ACCURACY_PNG, VALIDATION_PNG, TRAIN_LOSS_PNG = "accuracy.png", "val_curves.png", "train_loss.png"


@dataclass
class Report:
    sweep_id: str
    parent_run_id: str
    table: pd.DataFrame
    swept: list[str]
    output_dir: Path
    best: pd.Series | None
    # The MLflow UI's Runs view of this sweep.
    ui_url: str = ""
    registered: ModelVersion | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> pd.DataFrame:
        return self.table[self.table.status != "FINISHED"]


def _summary(sweep: SweepRuns, table: pd.DataFrame, best: pd.Series | None) -> str:
    done = int((table.status == "FINISHED").sum())
    lines = [
        f"# Sweep {sweep.sweep_id}",
        "",
        f"Parent run `{sweep.parent.info.run_id}`; {done} finished, {len(table) - done} not "
        f"finished; swept: {', '.join(sweep.swept) or 'nothing'}. Validation numbers are those "
        "of each run's best epoch.",
        "",
        markdown(table),
        "",
    ]
    if best is not None:
        lines += [
            f"Best by validation: job {best.job} `{best.run}` (run `{best.run_id}`), "
            f"val_accuracy {best.val_accuracy:.4f}, test_accuracy {best.test_accuracy:.4f}. "
            f"Chosen by the {SELECTION_RULE}.",
            "",
        ]
    lines += [f"![{name}]({name})" for name in (ACCURACY_PNG, VALIDATION_PNG, TRAIN_LOSS_PNG)]
    return "\n".join(lines) + "\n"


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_files(sweep: SweepRuns, table: pd.DataFrame, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    best = best_row(sweep, table)
    (out / TABLE_MD).write_text(_summary(sweep, table, best))
    table.to_csv(out / TABLE_CSV, index=False)
    labels = figures.run_labels(table, sweep.swept)
    title = f"sweep {sweep.sweep_id}"
    return [
        out / TABLE_MD,
        out / TABLE_CSV,
        _save(figures.accuracy_figure(table, sweep.swept, title), out / ACCURACY_PNG),
        _save(figures.validation_figure(sweep.history, labels, title), out / VALIDATION_PNG),
        _save(figures.train_loss_figure(sweep.history, labels, title), out / TRAIN_LOSS_PNG),
    ]


def register_best(
    client: MlflowClient, best: pd.Series | None, name: str, sweep_id: str
) -> ModelVersion:
    """A new version of registered model ``name``, pointing at the best run's ``model/``."""
    if best is None:
        raise TrackingError(f"register=true: sweep {sweep_id} has no finished run to register.")
    if names.MODEL_ARTIFACT not in {a.path for a in client.list_artifacts(best.run_id)}:
        raise TrackingError(
            f"register=true: the best run {best.run_id} has no model/ artifact "
            "(it was trained with tracking.log_model=false)."
        )
    check_safe_weights(client, best.run_id)
    try:
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        return client.create_model_version(
            name,
            source=f"{client.get_run(best.run_id).info.artifact_uri}/{names.MODEL_ARTIFACT}",
            run_id=best.run_id,
            tags={
                names.SWEEP_TAG: sweep_id,
                "selected_by": SELECTION_RULE,
                "val_accuracy": f"{best.val_accuracy:.4f}",
                "test_accuracy": f"{best.test_accuracy:.4f}",
            },
        )
    except MlflowException as e:
        raise TrackingError(f"register=true: cannot register {name!r}: {e}") from e


def compare(cfg: CompareConfig) -> Report:
    client, experiment = open_for_reading(cfg.tracking)
    sweep = read_sweep(client, experiment.experiment_id, cfg.sweep)
    table = run_table(sweep)
    out = Path(cfg.output_dir or Path(cfg.paths.outputs) / "compare" / sweep.sweep_id)
    files = write_files(sweep, table, out)
    parent_id = sweep.parent.info.run_id
    for path in files:
        client.log_artifact(parent_id, str(path), ARTIFACT_DIR)
    report = Report(
        sweep.sweep_id,
        parent_id,
        table,
        sweep.swept,
        out,
        best_row(sweep, table),
        files=files,
        ui_url=names.sweep_runs_url(
            ui_address(client.tracking_uri), experiment.experiment_id, sweep.sweep_id
        ),
    )
    if cfg.register:
        report.registered = register_best(client, report.best, cfg.registered_model, sweep.sweep_id)
    return report
