"""What ``hemotune evaluate`` retrains: the baseline, the top K other configurations, the same seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import synthetic_space_file

from hemotune.errors import UsageError
from hemotune.results import TrialRecord
from hemotune.spaces import validate_space
from hemotune.tuning.evaluation_plan import EvaluationRequest, metric_on_test, new_plan, trial_configs


def _record(trial_id: str, lr: float, plateau: float, best: float, status: str = "TERMINATED") -> TrialRecord:
    history = [{"epoch": 1, "val/score": best / 2}, {"epoch": 6, "val/score": best}]
    return TrialRecord(
        trial_id, f"trial_{trial_id}", status, {"lr": lr, "plateau": plateau, "seed": 7}, history
    )


RECORDS = [
    _record("a", 0.01, 1.0, 0.80),  # the known point: the baseline
    _record("b", 0.02, 0.9, 0.85),
    _record("c", 0.03, 0.9, 0.70),
    _record("d", 0.04, 0.9, 0.90, status="ERROR"),
]


def _space(tmp_path: Path):  # type: ignore[no-untyped-def]
    return validate_space(yaml.safe_load(synthetic_space_file(tmp_path).read_text()), "s.yaml")


def test_plan_pairs_the_baseline_and_the_best_others_over_the_same_seeds(tmp_path: Path) -> None:
    space = _space(tmp_path)
    plan = new_plan(space, RECORDS, EvaluationRequest("synthetic_test", top=2, seeds=3), None)
    # ranked d (failed: skipped), b, a (the baseline itself: skipped), c
    assert list(plan["arms"]) == ["baseline", "rank2", "rank4"]
    assert plan["arms"]["baseline"]["config"] == {"lr": 0.01, "plateau": 1.0}
    assert plan["arms"]["rank2"]["trial_id"] == "b" and plan["seeds"] == [7, 8, 9]
    assert plan["objective"] == metric_on_test("val/score") == "test/score" and plan["epochs"] == 6
    configs = trial_configs(plan)
    assert len(configs) == 9 and configs[0] == {
        "lr": 0.01,
        "plateau": 1.0,
        "seed": 7,
        "hemotune_arm": "baseline",
    }
    by_trial = new_plan(space, RECORDS, EvaluationRequest("s", top=1, seeds=1, baseline="c"), None)
    assert by_trial["arms"]["baseline"]["source"] == "trial c"
    assert list(by_trial["arms"]) == ["baseline", "rank2"]


def test_plan_refuses_unknown_baselines_and_bad_counts(tmp_path: Path) -> None:
    space = _space(tmp_path)
    with pytest.raises(UsageError, match="no trial 'zz' in search synthetic_test"):
        new_plan(space, RECORDS, EvaluationRequest("s", baseline="zz"), None)
    with pytest.raises(UsageError, match="has 1 known point"):
        new_plan(space, RECORDS, EvaluationRequest("s", baseline="3"), None)
    with pytest.raises(UsageError, match="--seeds >= 1"):
        new_plan(space, RECORDS, EvaluationRequest("s", seeds=0), None)
