"""An ablation grid search ends with ablation.json/.md: checked against the child runs by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import ABLATION_ARMS, ablation_space_file, mlflow_client, search_tree

from hemotune.cli import main
from hemotune.errors import SpaceValidationError
from hemotune.spaces import space_document, validate_space

ARMS = ABLATION_ARMS


def _grid_space(tmp_path: Path) -> Path:
    return ablation_space_file(tmp_path, "synthetic_ablation", repeats=3)


def test_ablation_section_is_validated_and_round_trips(tmp_path: Path) -> None:
    doc = yaml.safe_load(_grid_space(tmp_path).read_text())
    space = validate_space(doc, "grid.yaml")
    assert space.ablation is not None and space.ablation.factors == ("bigger", "adam")
    assert validate_space(space_document(space), "stored").ablation == space.ablation
    doc["ablation"] = {"baseline": "baseline", "factors": ["bigger"], "combined": "nope"}
    with pytest.raises(SpaceValidationError) as error:
        validate_space(doc, "grid.yaml")
    text = str(error.value)
    assert "ablation.factors: must be a list of the two factors' arm names" in text
    assert "ablation.combined: 'nope' is not a named grid point" in text


@pytest.mark.slow
def test_ablation_search_ends_with_deltas_and_synergy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    argv = [
        "search",
        str(_grid_space(tmp_path)),
        "--no-progress",
        "--results-dir",
        str(results),
        "--num-cpus",
        "2",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "## Change over baseline (paired by seed, 95% t interval)" in out
    assert "synergy Δboth − (Δbigger + Δadam) = " in out

    uri = f"sqlite:///{results / 'mlflow.db'}"
    parent, children = search_tree(uri, "synthetic_ablation")
    assert len(children) == 12
    value = {
        (c.data.tags["hemotune.arm"], int(c.data.params["seed"])): c.data.metrics["best/val/score"]
        for c in children
    }
    doc = json.loads(next(results.glob("synthetic_ablation-*/ablation.json")).read_text())
    seeds = [7, 8, 9]
    assert doc["seeds"] == seeds and list(doc["arms"]) == ["baseline", "bigger", "adam", "both"]
    delta = {arm: np.mean([value[(arm, s)] - value[("baseline", s)] for s in seeds]) for arm in ARMS}
    for arm in ("bigger", "adam", "both"):
        assert doc["deltas"][arm]["val/score"]["mean"] == pytest.approx(delta[arm])
    assert doc["additive_expectation"]["val/score"] == pytest.approx(delta["bigger"] + delta["adam"])
    synergy = doc["synergy"]["val/score"]
    assert synergy["mean"] == pytest.approx(delta["both"] - delta["bigger"] - delta["adam"])
    per_seed = [
        value[("both", s)] - value[("bigger", s)] - value[("adam", s)] + value[("baseline", s)] for s in seeds
    ]
    assert min(per_seed) - 1e-9 <= synergy["low"] <= synergy["high"] <= max(per_seed) + 1e-9
    # the curves multiply plateau by the optimizer factor: a real (negative) interaction, the same every seed
    assert per_seed == pytest.approx([per_seed[0]] * 3) and per_seed[0] < 0
    assert doc["synergy_statement"].endswith(": distinguishable from zero")
    assert doc["warnings"] == []  # seed_noise makes every seed differ
    client = mlflow_client(uri)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"ablation.json", "ablation.md"}
    assert "synergy" in client.get_run(parent.info.run_id).data.tags["hemotune.synergy"]
