"""What ``hemotune evaluate`` retrains: the baseline and the top K configurations, N seeds each.

The plan is plain data, stored as ``hemotune_evaluation.json`` beside the evaluation's
Tune experiment (``--resume`` reruns exactly it). Every configuration runs with the
same seeds ``seed, seed+1, ...`` (the space's seed first): a paired design, so the
comparison with the baseline is taken seed by seed. No Ray here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hemotune.config import ARM_KEY, SearchSpace
from hemotune.errors import UsageError
from hemotune.results import RankedTrial, TrialRecord, rank_trials

EVALUATION_STATE = "hemotune_evaluation.json"
EXPERIMENT_PREFIX = "evaluation-"
BASELINE = "baseline"


@dataclass(frozen=True)
class EvaluationRequest:
    """``hemotune evaluate``'s options: how many configurations and seeds, which test set and baseline."""

    search: str
    top: int = 3
    seeds: int = 3
    test_path: str | None = None
    epochs: int | None = None
    baseline: str | None = None


def metric_on_test(metric: str) -> str:
    """The test split's name of a validation metric: ``val/mAP50-95`` -> ``test/mAP50-95``."""
    return f"test/{metric.split('/', 1)[1]}" if metric.startswith("val/") else metric


def _values(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's searched values, without the seed and grid arm Tune's config also holds."""
    return {k: v for k, v in config.items() if k not in (ARM_KEY, "seed")}


def _matches(config: Mapping[str, Any], point: Mapping[str, Any]) -> bool:
    return all(config.get(k) == v for k, v in point.items())


def baseline_arm(space: SearchSpace, records: Sequence[TrialRecord], choice: str | None) -> dict[str, Any]:
    """The baseline's config and where it came from: a known point (default the first) or a trial id.

    A known point that leaves some searched parameter open is completed from the first
    trial that ran it (the search evaluates known points first).
    """
    by_id = {r.trial_id: r for r in records}
    if choice is not None and not choice.isdigit():
        if choice not in by_id:
            known = ", ".join(sorted(by_id)) or "none"
            raise UsageError(
                f"--baseline {choice}: no trial {choice!r} in search {space.name}; trials: {known}"
            )
        return {"source": f"trial {choice}", "trial_id": choice, "config": _values(by_id[choice].config)}
    index = int(choice) if choice is not None else 0
    if choice is None and not space.points_to_evaluate and space.search.grid_arms:
        return _grid_baseline(space)
    if index >= len(space.points_to_evaluate):
        raise UsageError(
            f"--baseline {index}: search {space.name} has {len(space.points_to_evaluate)} known point(s) "
            "(points_to_evaluate); pass --baseline TRIAL_ID"
        )
    point = dict(space.points_to_evaluate[index])
    names = [p.name for p in space.parameters]
    trial = next((r for r in records if _matches(r.config, point)), None)
    if trial is None and set(names) - set(point):
        raise UsageError(
            f"points_to_evaluate[{index}] of {space.name} leaves {sorted(set(names) - set(point))} open and "
            "no trial ran it; pass --baseline TRIAL_ID"
        )
    config = _values(trial.config) if trial is not None else point
    return {
        "source": f"points_to_evaluate[{index}]",
        "trial_id": trial.trial_id if trial is not None else None,
        "config": config,
    }


def _grid_baseline(space: SearchSpace) -> dict[str, Any]:
    """A grid's baseline: the ablation's baseline arm, else the grid's first point."""
    name = space.ablation.baseline if space.ablation is not None else space.search.grid_arms[0].name
    arm = next(a for a in space.search.grid_arms if a.name == name)
    return {"source": f"grid point {name}", "trial_id": None, "config": dict(arm.values)}


def top_arms(
    ranking: Sequence[RankedTrial], top: int, baseline: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """``rank<N>`` -> config of the K best trials (by the search objective), the baseline's left out."""
    arms: dict[str, dict[str, Any]] = {}
    for entry in ranking:
        if len(arms) >= top:
            break
        if entry.best_value is None or entry.outcome == "failed":
            continue
        values = _values(entry.params)
        taken = [baseline["config"], *(arm["config"] for arm in arms.values())]
        if entry.trial_id == baseline.get("trial_id") or values in taken:  # a grid repeats each point
            continue
        arms[f"rank{entry.rank}"] = {
            "source": f"trial {entry.trial_id} (search rank {entry.rank}, best {entry.best_value:.4f})",
            "trial_id": entry.trial_id,
            "config": values,
        }
    return arms


def new_plan(
    space: SearchSpace, records: Sequence[TrialRecord], request: EvaluationRequest, test_path: str | None
) -> dict[str, Any]:
    """The evaluation to run: arms (baseline first), seeds, epochs, test set, Tune experiment name."""
    if request.top < 0 or request.seeds < 1:
        raise UsageError(f"--top must be >= 0 and --seeds >= 1 (got {request.top}, {request.seeds})")
    if request.epochs is not None and request.epochs < 1:
        raise UsageError(f"--epochs must be >= 1 (got {request.epochs})")
    baseline = baseline_arm(space, records, request.baseline)
    arms = {BASELINE: baseline, **top_arms(rank_trials(records, space, {}), request.top, baseline)}
    if space.ablation is not None and request.baseline is None:
        arms = ablation_arms(space)  # the ablation's four arms, by name, on the test split
    return {
        "search": space.name,
        "experiment": f"{EXPERIMENT_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}",
        "arms": arms,
        "seeds": [space.seed + i for i in range(request.seeds)],
        "epochs": request.epochs or space.budget.epochs,
        "test_path": test_path,
        "objective": metric_on_test(space.objective.metric),
        "mode": space.objective.mode,
        "status": "planned",
    }


def ablation_arms(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """An ablation search's evaluation: its baseline, two factors and combined arm (the grid's points).

    Named as in the ``ablation:`` section, baseline first, so ``analyse_ablation`` runs on the test
    results as on the search's validation results (``tuning.ablation.summarize_test_ablation``).
    """
    assert space.ablation is not None
    ablation = space.ablation
    points = {arm.name: dict(arm.values) for arm in space.search.grid_arms}
    order = [ablation.baseline, *ablation.factors, ablation.combined]
    return {
        name: {"source": f"grid point {name}", "trial_id": None, "config": points[name]} for name in order
    }


def baseline_name(plan: Mapping[str, Any]) -> str:
    """The plan's baseline arm: the first (``baseline``, or an ablation's baseline arm)."""
    return next(iter(plan["arms"]), BASELINE)


def trial_configs(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One Tune config per (arm, seed): the arm's values, the seed and the arm's name."""
    return [
        {**arm["config"], "seed": seed, ARM_KEY: name}
        for name, arm in plan["arms"].items()
        for seed in plan["seeds"]
    ]
