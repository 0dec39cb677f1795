"""Builds, runs and restores the Ray Tune search; the trial function that runs in Ray workers.

* ``search``: ``run_search`` (one search from data preparation to the exported best
  trial) and ``sync_search`` (``hemotune sync``).
* ``tuner``: the ``Tuner`` (Optuna TPE searcher, ASHA scheduler, run configuration).
* ``trial``: ``run_trial``, one trial in its Ray worker.
* ``state``: hemotune's state file beside Tune's experiment (``--resume``, ``sync``).
* ``session``, ``callbacks``, ``searcher``: the Ray session, the driver's Tune
  callbacks (progress, prompt run closing) and the resumable Optuna searcher.

Ray is imported only inside functions (and by ``callbacks`` and ``searcher``,
which only a running search imports).
"""

from __future__ import annotations

from hemotune.tuning.search import SearchOutcome, resolve_trials, run_search, sync_search
from hemotune.tuning.state import STATE_FILE, find_resumable, load_resumable_space
from hemotune.tuning.trial import TrialJob, run_trial

__all__ = [
    "STATE_FILE",
    "SearchOutcome",
    "TrialJob",
    "find_resumable",
    "load_resumable_space",
    "resolve_trials",
    "run_search",
    "run_trial",
    "sync_search",
]
