"""A resumed Tune experiment whose search state is older or newer than its trial list, made consistent.

Ray Tune 2.60 keeps a resumable experiment in separate files: the trial list
(``experiment_state-*.json``), the search generator's state (``search_gen_state-*.json``:
how many trials it has created, and the ``ConcurrencyLimiter``'s set of live trials) and
the searcher's (``searcher-state-*.pkl``). It uploads them to S3 one by one in the
background, and a save can rewrite them while an earlier upload still copies them, so a
driver killed at the wrong moment leaves a snapshot that mixes two saves
(docs/distributed.md, "Ray Tune's snapshot is not atomic"). Restored as is:

* a creation count older than the trial list makes the search run more trials than
  ``num_samples``, a newer one fewer;
* a live set older than the trial list lacks trials that are restored and finish: the
  limiter drops their completion without passing it on, so the searcher (and the Optuna
  study) never learns their outcome; a newer one holds trials that no longer exist, each
  keeping a concurrency slot for ever.

* a trial list older than the checkpoints in storage can name a checkpoint that the trial
  deleted since (it keeps ``CheckpointConfig(num_to_keep)``): Tune fails every restore of
  that trial ("does not exist on storage anymore") until ``max_failures`` is spent, and the
  trial is lost.

``align_search_with_trials`` sets the first two from the trial list Tune restored, which is
what actually runs; ``drop_lost_checkpoints`` lets such a trial restart from the newest
checkpoint of its list that still exists, else from its first epoch (the trial's MLflow run
keeps its history: a restarted trial skips the epochs it already logged). ``install`` hooks it into ``TuneController.resume`` of this process (the
driver that resumes), once. Imported only when a search is resumed: it imports Ray.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_MARK = "_hemotune_realigned"


def align_search_with_trials(search_alg: Any, trials: list[Any]) -> dict[str, Any]:
    """Make the generator's trial count and the limiter's live set agree with ``trials``; what changed."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    changed: dict[str, Any] = {}
    if isinstance(search_alg, SearchGenerator) and search_alg._counter != len(trials):
        changed["created"] = (search_alg._counter, len(trials))
        search_alg._counter = len(trials)
    live = {t.trial_id for t in trials if not t.is_finished()}
    searcher = getattr(search_alg, "searcher", None)
    while searcher is not None:
        if isinstance(searcher, ConcurrencyLimiter) and searcher.live_trials != live:
            changed["live"] = (sorted(searcher.live_trials), sorted(live))
            searcher.live_trials = set(live)
            searcher.num_unfinished_live_trials = len(live)
        searcher = getattr(searcher, "searcher", None)
    if changed:
        log.warning("the restored search state disagreed with the restored trials; aligned: %s", changed)
    return changed


def drop_lost_checkpoints(trials: list[Any]) -> dict[str, str]:
    """Unfinished trials whose latest checkpoint is gone from storage -> what they restart from now."""
    changed: dict[str, str] = {}
    for trial in trials:
        manager = trial.run_metadata.checkpoint_manager
        latest = manager._latest_checkpoint_result
        if trial.is_finished() or latest is None or _exists(latest.checkpoint):
            continue
        kept = [r for r in manager._checkpoint_results if _exists(r.checkpoint)]
        manager._checkpoint_results = kept
        manager._latest_checkpoint_result = kept[-1] if kept else None
        changed[trial.trial_id] = kept[-1].checkpoint.path if kept else "its first epoch"
    if changed:
        log.warning("restored trials named checkpoints no longer in storage; restarting: %s", changed)
    return changed


def _exists(checkpoint: Any) -> bool:
    import pyarrow.fs as pafs

    return bool(checkpoint.filesystem.get_file_info(checkpoint.path).type != pafs.FileType.NotFound)


def install() -> None:
    """Run both repairs at the end of every ``TuneController.resume`` in this process."""
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.resume
    if getattr(original, _MARK, False):
        return

    def resume(self: Any, resume_config: Any) -> None:
        original(self, resume_config)
        align_search_with_trials(self._search_alg, self._trials)
        drop_lost_checkpoints(self._trials)

    setattr(resume, _MARK, True)
    TuneController.resume = resume  # type: ignore[method-assign]
