"""Acceptance: ``hemotune search bcd_ablation --preset smoke`` ends with the four arms, deltas and synergy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import mlflow_client, search_tree

from hemotune.cli import main


@pytest.mark.slow
def test_bcd_ablation_smoke_reports_arms_deltas_and_synergy(
    bccd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEMOTUNE_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "results"
    argv = ["search", "bcd_ablation", "--preset", "smoke", "--data", str(bccd_dir), "--no-progress"]
    assert main([*argv, "--results-dir", str(results), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "## Change over baseline (paired by seed, 95% t interval)" in out
    assert "synergy Δboth − (Δaccumulation + Δreweighting) = " in out

    uri = f"sqlite:///{results / 'mlflow.db'}"
    parent, children = search_tree(uri, "bcd_ablation")
    assert sorted((c.data.tags["hemotune.arm"], c.data.params["seed"]) for c in children) == sorted(
        (arm, seed) for arm in ("baseline", "accumulation", "reweighting", "both") for seed in ("0", "1")
    )
    by_arm = {c.data.tags["hemotune.arm"]: c.data.params for c in children}
    # linear lr scaling: twice the accumulation, twice lr0 (0.0025 -> 0.005 at the smoke's batch 4)
    assert float(by_arm["accumulation"]["lr0"]) == 2 * float(by_arm["baseline"]["lr0"]) == 0.005
    assert by_arm["reweighting"]["box"] == "10.0" and by_arm["reweighting"]["cls"] == "0.4"
    doc = json.loads(next(results.glob("bcd_ablation-*/ablation.json")).read_text())
    assert list(doc["arms"]) == ["baseline", "accumulation", "reweighting", "both"]
    assert doc["metrics"] == ["val/mAP50-95", "val/precision", "val/recall", "val/mAP50"]
    assert set(doc["deltas"]) == {"accumulation", "reweighting", "both"}
    synergy = doc["synergy"]["val/mAP50-95"]
    assert synergy["n"] == 2 and synergy["low"] is not None and synergy["low"] <= synergy["high"]
    assert "distinguishable from zero" in doc["synergy_statement"]
    paths = {a.path for a in mlflow_client(uri).list_artifacts(parent.info.run_id)}
    assert {"ablation.json", "ablation.md"} <= paths
