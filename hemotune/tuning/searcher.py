"""Ray Tune's OptunaSearch, made safe to resume from a snapshot taken mid-upload, with a persistent study.

Ray Tune 2.60 saves the experiment state (the trial list) and the searcher
state to the driver's staging folder and uploads that folder to storage in the
background. A save can rewrite the files while an earlier upload is still
copying them, so the snapshot in S3 may hold an experiment state a few seconds
newer than the searcher state. After ``--resume`` such a trial is restored and
reports results the restored searcher never suggested, and OptunaSearch fails
on it with a ``KeyError`` that aborts the search.

``ResumableOptunaSearch`` instead records such a trial in the Optuna study: as the
study's own trial still marked running when the study is a journal that outlived the
searcher state (``hemotune.tuning.samplers``), else as a new evaluated point (its
config and final objective travel with Tune's result), so the search goes on and the
sampler still learns from it. With a remote experiment, a copy of the journal is saved
beside the searcher state and brought back on a machine that lacks it. Imported only
when a search runs: it imports Ray and Optuna.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)
#: The journal's copy beside the searcher state of a remote experiment: a JSON document holding its
#: text, because a restoring driver gets only the ``.json`` and ``.pkl`` files of the experiment folder
#: from storage (Ray Tune 2.60, ``sync_down_experiment_state``); a ``.log`` copy never came back.
JOURNAL_SNAPSHOT = "optuna_journal.snapshot.json"


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that accepts results of trials restored without their searcher record.

    ``param_names``: the config keys the study holds; ``distributions``: every Optuna
    distribution they may have (a define-by-run space does not list them itself).
    """

    def __init__(
        self,
        space: Any,
        *,
        param_names: Sequence[str] | None = None,
        distributions: Mapping[str, Any] | None = None,
        snapshot_journal: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(space=space, **kwargs)
        self.param_names = list(param_names if param_names is not None else space)
        self.distributions = dict(distributions if distributions is not None else space)
        self.snapshot_journal = str(snapshot_journal) if snapshot_journal else None
        self._orphans: list[int] = []

    def save(self, checkpoint_path: str) -> None:
        super().save(checkpoint_path)
        if self.snapshot_journal and Path(self.snapshot_journal).exists():
            target = Path(checkpoint_path).parent / JOURNAL_SNAPSHOT
            partial = target.with_name(f".{target.name}.partial")  # never a half-written snapshot
            partial.write_text(json.dumps({"optuna_journal": Path(self.snapshot_journal).read_text()}))
            os.replace(partial, target)

    def restore(self, checkpoint_path: str) -> None:
        snapshot = Path(checkpoint_path).parent / JOURNAL_SNAPSHOT
        journal = Path(self.snapshot_journal) if self.snapshot_journal else None
        if journal is not None and not journal.exists() and snapshot.exists():  # resumed on another machine
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text(json.loads(snapshot.read_text())["optuna_journal"])
        super().restore(checkpoint_path)
        self._orphans = self._running_unknown_trials()

    def _running_unknown_trials(self) -> list[int]:
        """Study trials still running that no trial of the restored searcher holds (asked after its save)."""
        from optuna.trial import TrialState

        if self._ot_study is None:
            return []
        known = {trial.number for trial in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [trial.number for trial in running if trial.number not in known]

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            super().on_trial_result(trial_id, result)
        except KeyError:  # a trial this searcher never suggested (see the module docstring)
            return
        except UpdateFinishedTrialError:
            # The journal finished this trial after the searcher state was saved: the driver died
            # before its next save, and the resumed trial redoes its last epochs. The study keeps
            # its first outcome (the repeated tell is refused and logged by OptunaSearch).
            return

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        try:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        except KeyError:
            pass
        result = result or {}
        config = {n: result[f"config/{n}"] for n in self.param_names if f"config/{n}" in result}
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]  # several objectives
        values: list[Any] = [result.get(metric) for metric in metrics]
        if not config or any(value is None for value in values):
            log.warning(
                "trial %s was restored without a searcher record; Optuna does not learn from it", trial_id
            )
            return
        try:
            self._record_restored(config, [float(value) for value in values], error)
        except (
            Exception
        ) as exc:  # a config outside the space, a NaN: the sampler simply does not learn from it
            log.warning("could not add restored trial %s to the Optuna study: %s", trial_id, exc)

    def _record_restored(self, config: Mapping[str, Any], values: list[float], error: bool) -> None:
        """Tell the study's orphaned running trial with this config, else add the trial as evaluated.

        ``values``: one per objective (a single-objective study is told a float).
        """
        import optuna
        from optuna.trial import TrialState

        study: Any = self._ot_study
        state = TrialState.FAIL if error else TrialState.COMPLETE
        told: Any = None if error else (values if len(values) > 1 else values[0])
        for number in self._orphans:
            if dict(study.get_trials(deepcopy=False)[number].params) == dict(config):
                self._orphans.remove(number)
                study.tell(number, told, state=state)
                return
        distributions = {name: self.distributions[name] for name in config}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=told if len(values) == 1 else None,
                values=told if len(values) > 1 else None,
                params=dict(config),
                distributions=distributions,
            )
        )
