"""``objectives:`` (multi-objective searches): validated before Ray starts, errors naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import base_doc, write

from hemotune.config import Objective
from hemotune.errors import SpaceValidationError
from hemotune.evidence.pareto import non_dominated, pareto_document
from hemotune.spaces import load_space, space_document, validate_space

REPO = Path(__file__).resolve().parents[2]
TWO = [{"metric": "val/score", "mode": "max"}, {"metric": "val/cost", "mode": "min"}]


def _doc(tmp_path: Path, **updates: Any) -> dict:
    doc = base_doc(tmp_path)
    doc.pop("objective")
    return doc | updates


def _problems(tmp_path: Path, doc: dict) -> str:
    path = write(tmp_path, doc)
    with pytest.raises(SpaceValidationError) as info:
        load_space(str(path))
    assert str(path) in str(info.value)  # every problem names the file
    return str(info.value)


def test_objectives_keep_the_first_as_the_objective(tmp_path: Path) -> None:
    space = load_space(str(write(tmp_path, _doc(tmp_path, objectives=TWO))))
    assert space.objectives == (Objective("val/score", "max"), Objective("val/cost", "min"))
    assert space.objective == Objective("val/score", "max")  # ASHA, ranking and best weights use it
    assert space.as_dict()["objectives"] == TWO and "objective" not in space.as_dict()
    assert validate_space(space_document(space), "stored").objectives == space.objectives  # round trip


@pytest.mark.parametrize(
    ("objectives", "expected"),
    [
        ([TWO[0]], "objectives: must be a list of two or more"),
        ("val/score", "objectives: must be a list of two or more"),
        ([TWO[0], {"metric": "val/nope", "mode": "max"}], "objectives[1].metric: 'val/nope' is not a metric"),
        ([TWO[0], {"metric": "val/cost", "mode": "lower"}], "objectives[1].mode: must be max or min"),
        ([TWO[0], {"metric": "val/cost", "goal": "min"}], "objectives[1].goal: unknown key"),
        ([TWO[0], dict(TWO[0])], "objectives[1].metric: 'val/score' is already objectives[0]"),
        ([TWO[0], "val/cost"], "objectives[1]: must be a mapping"),
    ],
)
def test_invalid_objectives_name_their_key(tmp_path: Path, objectives: Any, expected: str) -> None:
    assert expected in _problems(tmp_path, _doc(tmp_path, objectives=objectives))


def test_objective_and_objectives_are_mutually_exclusive(tmp_path: Path) -> None:
    doc = base_doc(tmp_path) | {"objectives": TWO}
    assert "objectives: objective and objectives are mutually exclusive" in _problems(tmp_path, doc)


def test_a_single_objective_sampler_is_refused(tmp_path: Path) -> None:
    doc = _doc(tmp_path, objectives=TWO, search={"sampler": "cmaes"})
    assert "search.sampler: cmaes optimises a single objective; with 2 objectives" in _problems(tmp_path, doc)


def test_non_dominated_is_optunas_front() -> None:
    points = [[0.9, 0.9], [0.5, 0.2], [0.8, 0.95], [0.4, 0.1], [0.9, 0.9]]
    # max score, min cost: [0.8, 0.95] is dominated by [0.9, 0.9]; ties are both kept
    assert non_dominated(points, ["max", "min"]) == [0, 1, 3, 4]
    doc = pareto_document(
        "s",
        TWO,
        [{"trial_id": str(i), "values": {"val/score": s, "val/cost": c}} for i, (s, c) in enumerate(points)]
        + [{"trial_id": "nan", "values": {"val/score": float("nan"), "val/cost": 0.0}}],
    )
    assert [c["trial_id"] for c in doc["front"]] == ["0", "4", "1", "3"]  # best first by val/score
    assert doc["trials_considered"] == 5


def test_shipped_pareto_spaces_are_valid() -> None:
    for name in ("bcd_pareto", "pbc_pareto"):
        proc = subprocess.run(
            [sys.executable, "-m", "hemotune", "spaces", "validate", name],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"valid: {name} (as written, preset plumbing, preset smoke)" in proc.stdout
        path = REPO / "search_spaces" / f"{name}.yaml"
        space = validate_space(yaml.safe_load(path.read_text()), str(path), check_data=False)
        assert len(space.objectives) == 2 and space.objective == space.objectives[0]
