"""The smoke-search and MLflow login-cache benchmarks at smoke size, so that they cannot rot.

``benchmarks/smoke_searches/run.py --smoke`` runs a shipped search through the CLI with its
``plumbing`` preset; ``benchmarks/mlflow_auth/run.py --smoke`` starts two real basic-auth MLflow
servers (login cache off and on) and times a few authenticated reads on each. Their timings mean
nothing at this size; what is checked is that each script runs end to end and writes its JSON with
the envelope, the figures and the targets.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, timeout: float) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--smoke", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def check_envelope(doc: dict, name: str) -> None:
    assert doc["name"] == name and doc["smoke"] is True and doc["date"][:2] == "20"
    assert doc["machine"]["cpu_cores"] >= 1 and doc["versions"]["mlflow"] and doc["versions"]["hemotune"]
    assert doc["targets"] and all(isinstance(t["met"], bool) for t in doc["targets"])


@pytest.mark.slow
def test_smoke_searches_benchmark_runs_a_shipped_search_through_the_cli(tmp_path: Path) -> None:
    run_script("smoke_searches/run.py", "--searches", "all_leukemia", "--out", str(tmp_path), timeout=300)
    doc = json.loads((tmp_path / "smoke_searches-smoke.json").read_text())
    check_envelope(doc, "smoke_searches")
    (row,) = doc["runs"]
    assert (row["search"], row["preset"], row["cache"], row["exit_code"]) == (
        "all_leukemia",
        "plumbing",
        "cold",
        0,
    )
    assert row["best_metric"] == "val/macro_f1" and math.isfinite(row["best_value"])
    assert 0.0 <= row["best_value"] <= 1.0 and 1 <= row["best_epoch"] <= 2
    assert row["wall_s"] > 5 and row["peak_rss_gib"] > 0.3  # Ray's processes and two trials
    assert [t["name"] for t in doc["targets"]] == ["all_leukemia wall time"]
    assert doc["targets"][0]["measured"] == row["wall_s"]


@pytest.mark.slow
def test_mlflow_auth_benchmark_times_both_servers_and_refuses_wrong_passwords(tmp_path: Path) -> None:
    run_script("mlflow_auth/run.py", "--out", str(tmp_path), timeout=240)
    doc = json.loads((tmp_path / "mlflow_auth-smoke.json").read_text())
    check_envelope(doc, "mlflow_auth")
    servers = doc["servers"]
    assert set(servers) == {"no_cache", "cache_60s"}
    for figures in servers.values():
        assert figures["requests"] == 3 and 0 < figures["median_s"] <= figures["max_s"]
        assert figures["wrong_password_statuses"] == [401] * 3  # the cache never admits a wrong password
    ratio = servers["cache_60s"]["median_s"] / servers["no_cache"]["median_s"]
    assert abs(doc["ratio_cached_over_uncached"] - ratio) <= 5e-5 + 1e-12  # the JSON keeps 4 decimals
    refused = next(t for t in doc["targets"] if t["name"].startswith("wrong-password"))
    assert refused["measured"] == 1.0 and refused["met"] is True


@pytest.mark.slow
def test_classification_parts_profiles_every_part_of_a_trial(tmp_path: Path, pbc8_dir: Path) -> None:
    run_script(
        "overhead/classification_parts.py",
        "--out",
        str(tmp_path),
        "--data-root",
        str(pbc8_dir.parent),
        timeout=300,
    )
    doc = json.loads((tmp_path / "overhead_classification_parts-smoke.json").read_text())
    assert doc["name"] == "overhead_classification_parts" and doc["smoke"] is True
    assert doc["epochs"] == 1 and doc["settings"]["epochs"] == 1
    parts = doc["parts_s"]
    assert len(parts) == 8 and all(math.isfinite(s) and s >= 0 for s in parts.values())
    # Every part ran in the one epoch (the first epoch is always an improvement: best weights written).
    for part in ("train passes (forward, backward, optimizer)", "per-epoch checkpoint (torch.save)"):
        assert parts[part] > 0, part
    assert (
        parts["best weights + confusion matrix (improved epochs)"]
        >= parts["confusion-matrix figure and JSON"]
        > 0
    )
    assert sum(parts.values()) - parts["confusion-matrix figure and JSON"] <= doc["profiled_total_s"] + 1e-6
