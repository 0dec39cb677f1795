"""``hemotune evaluate`` end to end on the synthetic trainer: real Ray, real MLflow, hand-checked statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import mlflow_client, search_tree, synthetic_space_file
from scipy import stats

from hemotune.cli import main


@pytest.mark.slow
def test_evaluate_retrains_with_paired_seeds_and_logs_the_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = synthetic_space_file(
        tmp_path,
        name="synthetic_eval",
        budget={"num_samples": 3, "epochs": 3, "grace_period": 3, "max_concurrent": 2},
        fixed={"best_lr": 0.01, "rate": 0.6, "seconds_per_epoch": 0.0},
    )
    results = tmp_path / "results"
    common = ["--results-dir", str(results), "--num-cpus", "2"]
    assert main(["search", str(space), "--no-progress", *common]) == 0
    test_set = tmp_path / "independent_test"
    test_set.mkdir()
    (test_set / "images.txt").write_text("synthetic test images\n")
    capsys.readouterr()

    assert main(["evaluate", "nonexistent_search", *common]) == 2
    assert "no search named 'nonexistent_search'" in capsys.readouterr().err
    assert main(["evaluate", "synthetic_eval", "--test", str(tmp_path / "missing"), *common]) == 2
    assert f"the test set {tmp_path / 'missing'} does not exist" in capsys.readouterr().err

    argv = ["evaluate", "synthetic_eval", "--top", "1", "--seeds", "2", "--test", str(test_set), *common]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "## Compared with the baseline (baseline), paired by seed" in out
    assert "paired bootstrap over 200 test images" in out

    parent, children = search_tree(f"sqlite:///{results / 'mlflow.db'}", "synthetic_eval")
    evaluation = [c for c in children if c.data.tags["hemotune.role"] == "evaluation"]
    assert len([c for c in children if c.data.tags["hemotune.role"] == "trial"]) == 3
    assert len(evaluation) == 4 and all(c.info.status == "FINISHED" for c in evaluation)
    assert sorted(int(c.data.tags["hemotune.seed"]) for c in evaluation) == [7, 7, 8, 8]
    assert parent.data.tags["hemotune.evaluation"].startswith("evaluation-")
    client = mlflow_client(f"sqlite:///{results / 'mlflow.db'}")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"evaluation.json", "evaluation.md"}

    doc = json.loads(next(results.glob("synthetic_eval-*/evaluation.json")).read_text())
    baseline, best = list(doc["arms"])  # the baseline (points_to_evaluate[0]) and the best other trial
    assert baseline == "baseline" and best.startswith("rank") and doc["objective"] == "test/score"
    assert doc["arms"]["baseline"]["source"] == "points_to_evaluate[0]"
    # the statistics by hand from what the child runs logged: test/score per (arm, seed)
    run_arm = {r: arm for arm, body in doc["arms"].items() for r in body["run_ids"].values()}
    logged = {
        (run_arm[c.info.run_id], int(c.data.tags["hemotune.seed"])): c.data.metrics["test/score"]
        for c in evaluation
    }
    for arm in ("baseline", best):
        for seed in (7, 8):
            assert doc["arms"][arm]["per_seed"][str(seed)]["test/score"] == logged[(arm, seed)]
    assert logged[("baseline", 7)] != logged[("baseline", 8)]  # the seed changes the test draws
    diffs = [logged[(best, s)] - logged[("baseline", s)] for s in (7, 8)]
    half = stats.t.ppf(0.975, 1) * np.std(diffs, ddof=1) / math.sqrt(2)
    difference = doc["comparisons"][best]["differences"]["test/score"]
    assert difference["mean"] == pytest.approx(np.mean(diffs))
    assert (difference["low"], difference["high"]) == pytest.approx(
        (np.mean(diffs) - half, np.mean(diffs) + half)
    )
    images = doc["comparisons"][best]["bootstrap_images"]
    assert images["available"] and images["images"] == 200 and images["seed"] in (7, 8)
    mean = np.mean([logged[("baseline", s)] for s in (7, 8)])
    assert doc["arms"]["baseline"]["summary"]["test/score"]["mean"] == pytest.approx(mean)
    assert doc["warnings"] == []
