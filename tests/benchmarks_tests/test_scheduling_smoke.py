"""The scheduling benchmark at smoke size, so that it cannot rot (benchmarks/scheduling/).

``run.py --smoke`` runs a real search (local Ray, Optuna, MLflow SQLite) of 8 sleep trials x 2
epochs of 0.2 s, 4 at a time, in its own process (the full run's sequential start-up probe and
cluster cases are left out: each case starts its own Ray). Its timings mean nothing at this size;
what is checked is the plumbing: the JSON's envelope and targets, the figures computed from
MLflow's timestamps, and every per-epoch metric row of every child run present in MLflow.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "scheduling" / "run.py"


@pytest.mark.slow
def test_scheduling_smoke_writes_every_row_and_the_figures(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "scheduling-smoke.json").read_text())
    assert doc["name"] == "scheduling" and doc["smoke"] is True and doc["date"][:2] == "20"
    assert doc["machine"]["cpu_cores"] >= 1 and doc["versions"]["ray"] and doc["versions"]["mlflow"]
    assert {t["name"] for t in doc["targets"]} == {
        "local overhead over ideal makespan",
        "MLflow per-epoch rows written / expected",
    }
    assert all(isinstance(t["met"], bool) for t in doc["targets"])
    search = doc["after"]["search"]
    assert (search["trials"], search["epochs"], search["concurrent"]) == (8, 2, 4)
    assert search["child_runs"] == search["child_runs_finished"] == 8
    assert search["mlflow_rows_expected"] == 8 * 2 * 4  # 4 per-epoch metrics, at every epoch, of every trial
    assert search["mlflow_rows_written"] == search["mlflow_rows_expected"] and search["mlflow_rows_complete"]
    assert math.isclose(search["ideal_s"], 8 * 2 * 0.2 / 4)
    assert search["tune_phase_s"] > search["ideal_s"] and search["overhead"] > 0
    assert 0 < search["time_to_first_trial_s"] < search["tune_phase_s"]
    assert search["driver_peak_rss_mib"] > 100  # the driver imports Ray, Optuna and MLflow
    assert search["steady_trials_per_hour"] > 0 and search["trials_per_hour"] > 0
