"""The ``ablation:`` section: a 2x2 ablation read off a grid search's named points.

::

    search:
      sampler: grid
      scheduler: none
      grid: {points: {baseline: {...}, accumulation: {...}, reweighting: {...}, both: {...}}, repeats: 3}
    ablation:
      baseline: baseline
      factors: [accumulation, reweighting]
      combined: both
      metrics: [val/precision, val/recall, val/mAP50, val/mAP50-95]   # optional; the objective is always in

Each name must be a named point of the grid; at the search's end the ablation summary
(``ablation.json``/``.md``) compares the arms seed by seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hemotune.config import AblationSettings, Objective, SearchSettings
from hemotune.spaces.checker import Checker

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.trainers.base import Trainer

ABLATION_KEYS = ("baseline", "factors", "combined", "metrics")


def check_ablation(
    check: Checker, raw: Mapping[str, Any], search: SearchSettings, objective: Objective, trainer: Trainer
) -> AblationSettings | None:
    """``ablation``: four distinct named points of a grid search, and metrics the trainer reports."""
    if raw.get("ablation") is None:
        return None
    section = check.mapping(raw.get("ablation"), "ablation")
    check.unknown_keys(section, "ablation", ABLATION_KEYS, ", ".join(ABLATION_KEYS))
    factors = section.get("factors")
    if not isinstance(factors, list) or len(factors) != 2:
        check.add("ablation.factors", f"must be a list of the two factors' arm names, got {factors!r}")
        factors = ["", ""]
    names = {"baseline": section.get("baseline"), "combined": section.get("combined")}
    names.update({f"factors[{i}]": factor for i, factor in enumerate(factors)})
    arms = [arm.name for arm in search.grid_arms]
    if search.sampler != "grid":
        check.add("ablation", "needs search.sampler: grid with named points (the four arms)")
    for key, name in names.items():
        if not isinstance(name, str) or not name:
            check.add(f"ablation.{key}", f"must name an arm (a grid point), got {name!r}")
        elif search.sampler == "grid" and name not in arms:
            check.add(f"ablation.{key}", f"{name!r} is not a named grid point; points: {', '.join(arms)}")
    if len({str(n) for n in names.values()}) != 4:
        check.add(
            "ablation", f"baseline, the two factors and combined must be four different arms, got {names}"
        )
    metrics = section.get("metrics") or []
    if not isinstance(metrics, list):
        check.add("ablation.metrics", f"must be a list of metric names, got {metrics!r}")
        metrics = []
    for metric in metrics:
        if not isinstance(metric, str) or not trainer.is_known_metric(metric):
            check.add("ablation.metrics", f"{metric!r} is not a metric trainer {trainer.name!r} reports")
    ordered = [objective.metric, *(m for m in metrics if m != objective.metric)]
    return AblationSettings(
        baseline=str(names["baseline"]),
        factors=(str(factors[0]), str(factors[1])),
        combined=str(names["combined"]),
        metrics=tuple(str(m) for m in ordered),
    )
