"""``objectives:``: a multi-objective search, two or more ``{metric, mode}`` entries.

::

    objectives:
      - {metric: val/mAP50-95, mode: max}      # the first: early stopping, ranking, best weights
      - {metric: val/AP50/Platelets, mode: max}

Optuna's multi-objective samplers (TPE, NSGA-II, ...) learn from every objective; the
first one is also the space's ``objective``, so ASHA, the ranking and the exported best
trial keep working on it. The search's end reports the Pareto front
(``hemotune.tuning.pareto``). ``objective:`` and ``objectives:`` are mutually exclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hemotune.config import Objective
from hemotune.spaces.checker import Checker
from hemotune.spaces.sections import check_objective

#: The stand-in objective of a file whose ``objectives`` are invalid (its problems are already recorded).
_INVALID = Objective(metric="", mode="max")

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.trainers.base import Trainer


def check_objectives(check: Checker, raw: Mapping[str, Any], trainer: Trainer) -> tuple[Objective, ...]:
    """``objectives``: at least two distinct metrics the trainer reports, each ``max`` or ``min``.

    Empty when the file has none (a single-objective search, ``objective:``).
    """
    entries = raw.get("objectives")
    if entries is None:
        return ()
    if "objective" in raw:
        check.add("objectives", "objective and objectives are mutually exclusive: keep one")
    if not isinstance(entries, list) or len(entries) < 2:
        check.add(
            "objectives",
            "must be a list of two or more {metric, mode} entries (one objective: use objective:)",
        )
        return ()
    objectives = []
    for index, entry in enumerate(entries):
        key = f"objectives[{index}]"
        # the single-objective validator, its messages re-keyed to this entry
        sub = Checker(check.source)
        objective = check_objective(sub, {"objective": entry}, trainer)
        for problem in sub.problems:
            check.problems.append(problem.replace("objective", key, 1))
        objectives.append(objective)
    metrics = [o.metric for o in objectives]
    for index, metric in enumerate(metrics):
        if metric in metrics[:index]:
            check.add(
                f"objectives[{index}].metric", f"{metric!r} is already objectives[{metrics.index(metric)}]"
            )
    return tuple(objectives)


def check_objective_sections(
    check: Checker, raw: Mapping[str, Any], trainer: Trainer
) -> tuple[Objective, tuple[Objective, ...]]:
    """``(objective, objectives)``: ``objectives:`` with its first entry, else ``objective:`` alone."""
    if "objectives" not in raw:
        return check_objective(check, raw, trainer), ()
    objectives = check_objectives(check, raw, trainer)
    return (objectives[0] if objectives else _INVALID), objectives
