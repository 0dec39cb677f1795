"""The overhead, data-path and GPU-packing benchmarks, smoke-sized, so that none of them can rot.

Each runs its real script (``--smoke``: tiny data, one epoch) in a subprocess and checks
the JSON it writes: the shared envelope of ``benchmarks/common.py`` (machine, versions,
date, targets with measured values and met flags) and finite, positive figures.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION_KEYS = {"python", "torch", "ultralytics", "ray", "optuna", "mlflow", "hemotune", "git_commit"}


def run_script(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_envelope(doc: dict[str, Any], name: str) -> None:
    """The fields every benchmark result carries (benchmarks/common.py write_result)."""
    assert doc["name"] == name and doc["smoke"] is True
    assert doc["date"][:2] == "20"
    machine = doc["machine"]
    assert machine["cpu_model"] and machine["cpu_cores"] >= 1 and machine["ram_gib"] > 0
    assert set(doc["versions"]) >= VERSION_KEYS
    assert doc["versions"]["hemotune"] and doc["versions"]["torch"]
    assert doc["targets"], "no target recorded"
    for t in doc["targets"]:
        assert isinstance(t["met"], bool) and t["target"].startswith(("<=", ">="))
        assert isinstance(t["measured"], float) and math.isfinite(t["measured"]) and t["measured"] >= 0


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_overhead_smoke_classification(tmp_path: Path, pbc8_dir: Path) -> None:
    """One bare loop and one hemotune trial (CLI, Ray, MLflow) on pbc8: the ratios and the phases."""
    proc = run_script(
        "benchmarks/overhead/run.py",
        "--smoke",
        "--tasks",
        "classification",
        "--data-root",
        str(pbc8_dir.parent),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "overhead-smoke.json").read_text())
    check_envelope(doc, "overhead")
    task = doc["tasks"]["classification"]
    assert [r["side"] for r in task["runs"]] == ["bare", "hemotune"]
    for side in ("bare", "hemotune"):
        for key in ("command_s", "training_s", "first_epoch_s", "peak_rss_gib"):
            assert positive(task[side][key]), (side, key, task[side])
        assert task[side]["first_epoch_s"] < task[side]["command_s"]
    assert task["hemotune"]["training_s"] < task["hemotune"]["command_s"]
    assert positive(task["ratio_command"]) and positive(task["ratio_training"])
    hemotune_run = task["runs"][1]
    assert hemotune_run["epochs"] == 1 and hemotune_run["phases"]["trial_s"] == task["hemotune"]["training_s"]
    assert "ratio" in proc.stdout and "wrote" in proc.stdout


@pytest.mark.slow
def test_data_path_smoke(tmp_path: Path, bccd_dir: Path, pbc8_dir: Path) -> None:
    """Cold and warm prepare_data and the trial-side open, detection and classification, with the 2 s target."""
    proc = run_script(
        "benchmarks/data_path/run.py",
        "--smoke",
        "--datasets",
        "bccd",
        "pbc8",
        "--data-root",
        str(bccd_dir.parent),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "data_path-smoke.json").read_text())
    check_envelope(doc, "data_path")
    assert set(doc["datasets"]) == {"bccd", "pbc8"}
    for name, row in doc["datasets"].items():
        assert positive(row["prepare_cold_s"]) and positive(row["prepare_warm_s"]), name
        assert positive(row["trial_open_first_s"]) and positive(row["trial_open_later_s"]), name
        assert row["images_opened"] > 0
    assert {t["name"].split()[0] for t in doc["targets"]} == {"bccd", "pbc8"}


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine runs the real benchmark")
def test_gpu_sharing_without_gpu_says_so(tmp_path: Path) -> None:
    """Without CUDA the GPU-packing benchmark stops before starting anything, exit 2, naming its README."""
    proc = run_script("benchmarks/gpu_sharing/run_gpu_sharing.py", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert "no CUDA GPU visible" in proc.stderr and "benchmarks/gpu_sharing/README.md" in proc.stderr
    assert not list(tmp_path.iterdir())
