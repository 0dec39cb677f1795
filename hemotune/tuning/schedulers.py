"""The Tune scheduler a ``search:`` section names, and the stopper of ``budget.target``.

Schedulers see the ``epoch`` every trainer reports after every epoch, and stop
trials on the objective: ``asha`` (default; grace period and reduction factor from
the budget), ``hyperband``, ``median`` (the median stopping rule) or ``none`` (every
trial runs all its epochs).

``hyperband`` is asynchronous Hyperband: ASHA over all of Hyperband's brackets (trials
are assigned to brackets of different grace periods in turn). Ray's synchronous
``HyperBandScheduler`` pauses trials at each rung and, measured on Ray 2.60 with the
synthetic trainer, left the best trials PAUSED when the search ended and stopped none,
so it is not used. Imported only when a
search runs: it imports Ray.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.stopper import Stopper

from hemotune.config import SearchSpace
from hemotune.tuning.samplers import reaches


def build_scheduler(space: SearchSpace) -> Any:
    """The scheduler of ``space.search``, its options over the budget's defaults."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    search, budget = space.search, space.budget
    options = dict(search.scheduler_options)
    if search.scheduler == "none":
        return FIFOScheduler()
    if search.scheduler == "hyperband":
        options = {
            "grace_period": budget.grace_period,
            "reduction_factor": budget.reduction_factor,
            **options,
        }
        options.setdefault(
            "brackets",
            hyperband_brackets(budget.epochs, options["grace_period"], options["reduction_factor"]),
        )
    if search.scheduler == "median":
        options = {"grace_period": budget.grace_period, **options}
        return MedianStoppingRule(time_attr="epoch", **options)
    options = {"grace_period": budget.grace_period, "reduction_factor": budget.reduction_factor, **options}
    return ASHAScheduler(time_attr="epoch", max_t=budget.epochs, **options)


def hyperband_brackets(max_t: int, grace_period: int, reduction_factor: float) -> int:
    """Hyperband's bracket count: one per rung of the most aggressive bracket (``s_max + 1``)."""
    return max(1, int(math.log(max(max_t / grace_period, 1)) / math.log(reduction_factor) + 1e-9) + 1)


class TargetStopper(Stopper):
    """Ends the whole search once any trial's objective reaches ``target``.

    Tune then stops every running trial at its next report (they end TERMINATED, their
    checkpoints and MLflow runs intact) and the searcher suggests no more.
    Pickled with the experiment, so a resumed search keeps its target.
    """

    def __init__(self, metric: str, mode: str, target: float) -> None:
        self.metric = metric
        self.mode = mode
        self.target = target
        self.reached_by: str | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.reached_by is None and reaches(result.get(self.metric), self.target, self.mode):
            self.reached_by = trial_id
        return False

    def stop_all(self) -> bool:
        return self.reached_by is not None


def target_stopper(space: SearchSpace) -> TargetStopper | None:
    """The stopper of ``budget.target`` (``None`` without one)."""
    if space.budget.target is None:
        return None
    return TargetStopper(space.objective.metric, space.objective.mode, float(space.budget.target))
