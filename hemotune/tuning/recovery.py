"""A trial whose reused Ray worker dies while being handed to it is retried, not lost.

With ``reuse_actors`` (``hemotune.tuning.tuner.reuse_actors``), Ray Tune 2.60 gives a
finished trial's worker process to the next trial through a ``reset`` task; the trial is
PENDING until that task returns. If the worker dies meanwhile (its node lost, the process
killed), Tune's ``_process_trial_failure`` retries only trials that are RUNNING and ends a
PENDING one as ERROR at once, whatever ``budget.max_failures`` allows. A worker that dies
while being *created* for a trial is retried: Tune marks such a trial RUNNING first
(``TuneController._actor_failed``). ``install`` does the same for a failed reset, and for
any PENDING trial whose failure is its worker's death (``RayActorError``). Found by
the seeded chaos run (``tests/cluster_tests/test_chaos.py``: a trial lost with 0 epochs
when a worker node was killed). Imported only when a search runs: it imports Ray.
"""

from __future__ import annotations

from typing import Any

_MARK = "_hemotune_reset_recovery"


def install() -> None:
    """Make a trial whose reset failed count a failure to recover from (once per process)."""
    from ray.exceptions import RayActorError
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    original = TuneController._process_trial_failure
    if getattr(original, _MARK, False):
        return

    def _process_trial_failure(self: Any, trial: Any, exception: Any) -> None:
        if trial.status == Trial.PENDING and (
            trial in self._resetting_trials or isinstance(exception, RayActorError)
        ):
            self._resetting_trials.discard(trial)
            self._set_trial_status(trial, Trial.RUNNING)  # as _actor_failed does for a failed creation
        original(self, trial, exception)

    setattr(_process_trial_failure, _MARK, True)
    TuneController._process_trial_failure = _process_trial_failure  # type: ignore[method-assign]
