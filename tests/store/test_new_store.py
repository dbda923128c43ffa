"""A new sqlite store starts as a copy of an empty, migrated one: the same schema, the same
schema version and the same Default experiment as a store MLflow creates itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlflow.tracking import MlflowClient

from emotion_lab.config import TrackingConfig
from emotion_lab.store.connection import SQLITE, open_for_writing


def _schema(db: Path) -> tuple[list, list]:
    """Every table and index with its definition, its clauses sorted: alembic's table rebuilds
    write a table's constraints in an order that varies from process to process (string
    hashing), with the same meaning."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        version = con.execute("SELECT version_num FROM alembic_version").fetchall()
    clauses = [
        (kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
        for kind, name, sql in rows
    ]
    return clauses, version


def test_a_new_store_is_the_store_mlflow_would_create(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    made_by_mlflow = tmp_path / "plain" / "mlflow.db"
    made_by_mlflow.parent.mkdir()
    plain = MlflowClient(SQLITE + str(made_by_mlflow))
    plain.create_experiment("emotion_lab", artifact_location="file:///elsewhere")

    copies = [tmp_path / name / "mlflow.db" for name in ("first", "second")]
    for db in copies:
        open_for_writing(TrackingConfig(uri=SQLITE + str(db)))
    (template,) = (tmp_path / "cache" / "emotion_lab").glob("mlflow-*-empty.db")
    # The template holds no experiment: MLflow adds its Default one to each copy it opens.
    with sqlite3.connect(template) as con:
        assert con.execute("SELECT count(*) FROM experiments").fetchone() == (0,)
    for db in copies:
        assert _schema(db) == _schema(made_by_mlflow)
        client = MlflowClient(SQLITE + str(db))
        default = client.get_experiment("0")
        assert default.artifact_location == plain.get_experiment("0").artifact_location
        assert client.get_experiment_by_name("emotion_lab").artifact_location == (
            (db.parent / "artifacts").resolve().as_uri()
        )


def test_an_existing_store_is_opened_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = SQLITE + str(tmp_path / "mlflow.db")
    experiment = open_for_writing(TrackingConfig(uri=uri))
    run = MlflowClient(uri).create_run(experiment)
    assert open_for_writing(TrackingConfig(uri=uri)) == experiment
    assert MlflowClient(uri).get_run(run.info.run_id).info.experiment_id == experiment
