"""A new embedded MLflow store is a copy of a pre-built empty one, and MLflow uses it like its own."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hemotune.tracking.client import resolve_tracking_uri
from hemotune.tracking.store_template import seed_sqlite_store, template_path


def test_copied_store_works_and_keeps_existing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("HEMOTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    template_path(tmp_path / "cache")  # built once per machine and MLflow version
    began = time.perf_counter()
    uri, artifacts = resolve_tracking_uri(None, tmp_path / "results")
    assert time.perf_counter() - began < 1.0  # a copy, not MLflow's table creation
    db = tmp_path / "results" / "mlflow.db"
    assert uri == f"sqlite:///{db}" and db.is_file()
    client = MlflowClient(tracking_uri=uri)
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "mlruns" / "0")
    experiment = client.create_experiment("search", artifact_location=artifacts)
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "val/mAP50", 0.25, step=1)
    assert client.get_metric_history(run.info.run_id, "val/mAP50")[0].value == 0.25
    assert not seed_sqlite_store(db, tmp_path / "cache")  # an existing store is never replaced
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
