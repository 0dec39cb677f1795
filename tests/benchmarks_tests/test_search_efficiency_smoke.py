"""The search-efficiency benchmark at smoke size, so that it cannot rot (benchmarks/search_efficiency/).

One seed on 8 BCCD images at 64 px: TPE + ASHA and random search without early stopping
(2 trials x 1 epoch each, real Ray, Optuna and MLflow) and Ultralytics' own tuner for one
1-epoch iteration, all through ``run.py --smoke``. Its figures mean nothing (mAP is 0 after
one epoch); what is checked is the plumbing: every trial recorded with its epochs in order,
best-so-far curves that never go down, the JSON's envelope, targets and noise statement,
the plot, and a rerun that reuses the stored steps instead of training again.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "search_efficiency" / "run.py"


@pytest.mark.slow
def test_search_efficiency_smoke(tmp_path: Path, bccd_dir: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--no-lock", "--out", str(tmp_path)]
    cmd += ["--data-root", str(bccd_dir.parent)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    doc = json.loads((tmp_path / "search_efficiency-smoke.json").read_text())
    assert doc["name"] == "search_efficiency" and doc["smoke"] is True
    assert doc["machine"]["cpu_cores"] >= 1 and doc["versions"]["ultralytics"]
    bccd = doc["tasks"]["bccd"]
    assert bccd["reference_method"] == "random_none"
    assert set(bccd["methods"]) == {"tpe_asha", "random_none", "ultralytics"}
    for method, m in bccd["methods"].items():
        (points,) = m["curves"]  # one seed
        expected = 1 if method == "ultralytics" else 2  # trials
        assert len(points) == expected, (method, points)
        epochs = [p[0] for p in points]
        bests = [p[1] for p in points]
        assert epochs == list(range(1, expected + 1))  # 1 epoch a trial, cumulative
        assert all(b >= a for a, b in itertools.pairwise(bests))  # best-so-far never goes down
        assert m["band"]["mean"][epochs[-1]] == pytest.approx(bests[-1])
    comparison = bccd["ultralytics_comparison"]
    assert comparison["decided"] is False  # one seed a side decides nothing
    names = [t["name"] for t in doc["targets"]]
    assert any("Ultralytics" in n for n in names) and any("epochs to reach" in n for n in names)
    assert all(isinstance(t["met"], bool) for t in doc["targets"])
    assert doc["noise"] and "undecidable" in doc["noise"][0]
    assert (tmp_path / "search_efficiency_bccd-smoke.png").stat().st_size > 10_000

    began = time.monotonic()  # stored steps are reused: no training the second time
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "running" not in again.stdout and time.monotonic() - began < 30
