"""An in-memory Optuna study of a search, built from Ray Tune's stored results.

The searcher's own study lives inside Tune's searcher state (a pickle); the report
does not depend on it. It rebuilds one with ``optuna.trial.create_trial`` from the
trial records, so Optuna's visualisation and importance code can be used as is:

* trial numbers follow the order Tune created the trials (``experiment_state``);
* a trial with a best objective value is COMPLETE with that value (the ranking's
  value: the best epoch by the objective), stopped-early ones included: Tune's
  ``OptunaSearch`` also completes a trial ASHA stopped (with its last value), so
  this is the study the sampler learned from. Its outcome is the user attribute
  ``outcome``;
* a failed trial, or one that reported no objective value, is FAIL;
* every trial's per-epoch objective values are its intermediate values (step = epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hemotune.config import SearchSpace
from hemotune.metrics import is_finite_number
from hemotune.results import RankedTrial, TrialRecord
from hemotune.spaces import optuna_space

if TYPE_CHECKING:  # pragma: no cover
    import optuna

log = logging.getLogger(__name__)


def objective_curve(record: TrialRecord, metric: str) -> dict[int, float]:
    """epoch -> the objective value reported at that epoch (finite values only)."""
    return {
        int(row["epoch"]): float(row[metric])
        for row in record.history
        if is_finite_number(row.get("epoch")) and is_finite_number(row.get(metric))
    }


def report_study(
    records: Sequence[TrialRecord], ranking: Sequence[RankedTrial], space: SearchSpace
) -> optuna.Study:
    """The search as an in-memory Optuna study (see the module docstring for the mapping)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    distributions = optuna_space(space)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory" line in the terminal
    try:
        study = optuna.create_study(
            study_name=space.name, direction="maximize" if space.objective.mode == "max" else "minimize"
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    ranked = {t.trial_id: t for t in ranking}
    for record in records:
        best = ranked[record.trial_id].best_value if record.trial_id in ranked else None
        complete = best is not None and record.outcome != "failed"
        params = _params(record.config, distributions)
        try:
            trial = create_trial(
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                value=best if complete else None,
                params=params,
                distributions={name: distributions[name] for name in params},
                intermediate_values=objective_curve(record, space.objective.metric),
                user_attrs={"trial_id": record.trial_id, "outcome": record.outcome},
            )
        except ValueError as exc:  # a value outside today's distributions: keep the rest of the study
            log.warning("trial %s left out of the report's study: %s", record.trial_id, exc)
            continue
        study.add_trial(trial)
    return study


def trial_numbers(study: optuna.Study) -> dict[str, int]:
    """Tune trial id -> Optuna trial number in ``study`` (the plots label trials by number)."""
    return {str(t.user_attrs["trial_id"]): t.number for t in study.trials}


def _params(config: Mapping[str, Any], distributions: Mapping[str, Any]) -> dict[str, Any]:
    """The searched values of a trial's config (Optuna wants exactly the distributions' names)."""
    return {name: config[name] for name in distributions if name in config}
