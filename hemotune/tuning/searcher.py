"""Ray Tune's OptunaSearch, made safe to resume from a snapshot taken mid-upload.

Ray Tune 2.60 saves the experiment state (the trial list) and the searcher
state to the driver's staging folder and uploads that folder to storage in the
background. A save can rewrite the files while an earlier upload is still
copying them, so the snapshot in S3 may hold an experiment state a few seconds
newer than the searcher state. After ``--resume`` such a trial is restored and
reports results the restored searcher never suggested, and OptunaSearch fails
on it with a ``KeyError`` that aborts the search.

``ResumableOptunaSearch`` instead records such a trial in the Optuna study as
an evaluated point (its config and final objective travel with Tune's result),
so the search goes on and TPE still learns from it. Imported only when a search
runs: it imports Ray and Optuna.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that accepts results of trials restored without their searcher record."""

    def __init__(self, space: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(space=space, **kwargs)
        self.param_names = list(space)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except KeyError:  # a trial this searcher never suggested (see the module docstring)
            return

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        try:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        except KeyError:
            pass
        config = {name: (result or {}).get(f"config/{name}") for name in self.param_names}
        value = (result or {}).get(self.metric)
        if any(v is None for v in config.values()) or value is None:
            log.warning(
                "trial %s was restored without a searcher record; TPE does not learn from it", trial_id
            )
            return
        try:
            self.add_evaluated_point(config, float(value), error=error)
        except Exception as exc:  # a config outside the space, a NaN: TPE simply does not learn from it
            log.warning("could not add restored trial %s to the Optuna study: %s", trial_id, exc)
