"""An ablation search evaluated on a test split: ``ablation.json`` gains the test metrics per arm.

``hemotune evaluate ABLATION --seeds 2 --test PATH`` retrains the ablation's four arms (by name,
not the search's top trials) with the same seeds on the test split; the ablation analysis of
those runs is checked by hand against the evaluation children's logged ``test/score``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import ABLATION_ARMS, ablation_space_file, mlflow_client, search_tree

from hemotune.cli import main

ARMS = ABLATION_ARMS


def _grid_space(tmp_path: Path) -> Path:
    return ablation_space_file(tmp_path, "ablation_test", repeats=1)


@pytest.mark.slow
def test_evaluating_an_ablation_on_a_test_split_adds_test_metrics_per_arm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    common = ["--results-dir", str(results), "--num-cpus", "2"]
    assert main(["search", str(_grid_space(tmp_path)), "--no-progress", *common]) == 0
    test_set = tmp_path / "test_set"
    test_set.mkdir()
    (test_set / "images.txt").write_text("synthetic test images\n")
    capsys.readouterr()
    assert main(["evaluate", "ablation_test", "--seeds", "2", "--test", str(test_set), *common]) == 0
    out = capsys.readouterr().out
    assert "## On the test split" not in out  # printed: the evaluation; the ablation goes to its files

    uri = f"sqlite:///{results / 'mlflow.db'}"
    parent, children = search_tree(uri, "ablation_test")
    evaluation = [c for c in children if c.data.tags["hemotune.role"] == "evaluation"]
    assert len(evaluation) == 8 and all(c.info.status == "FINISHED" for c in evaluation)
    logged = {(c.data.tags["hemotune.arm"], int(c.data.tags["hemotune.seed"])): c for c in evaluation}
    assert set(logged) == {(arm, seed) for arm in ARMS for seed in (7, 8)}  # the four arms, by name
    score = {key: run.data.metrics["test/score"] for key, run in logged.items()}

    doc = json.loads(next(results.glob("ablation_test-*/ablation.json")).read_text())
    assert list(doc["arms"]) == list(ARMS) and doc["metrics"][0] == "val/score"  # the search's, kept
    test = doc["test"]
    assert test["objective"] == "test/score" and test["seeds"] == [7, 8] and test["test"] == str(test_set)
    assert list(test["arms"]) == list(ARMS)
    for arm in ARMS:
        for seed in (7, 8):
            assert test["arms"][arm]["per_seed"][str(seed)]["test/score"] == score[(arm, seed)]
    delta = {arm: np.mean([score[(arm, s)] - score[("baseline", s)] for s in (7, 8)]) for arm in ARMS}
    for arm in ("bigger", "adam", "both"):
        assert test["deltas"][arm]["test/score"]["mean"] == pytest.approx(delta[arm])
    synergy = test["synergy"]["test/score"]
    assert synergy["mean"] == pytest.approx(delta["both"] - delta["bigger"] - delta["adam"])
    assert "synergy" in test["synergy_statement"]
    markdown = next(results.glob("ablation_test-*/ablation.md")).read_text()
    assert "## On the test split (evaluation-" in markdown and "test/score" in markdown
    client = mlflow_client(uri)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"ablation.json", "evaluation.json"}
    assert "synergy" in client.get_run(parent.info.run_id).data.tags["hemotune.test_synergy"]
