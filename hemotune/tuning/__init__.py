"""Builds, runs and restores the Ray Tune search; the trial function that runs in Ray workers.

* ``search``: ``run_search`` (one search from data preparation to the exported best
  trial) and ``sync_search`` (``hemotune sync``).
* ``tuner``: the ``Tuner`` (Optuna TPE searcher, ASHA scheduler, run configuration).
* ``trial``: ``run_trial``, one trial in its Ray worker.
* ``state``: hemotune's state file beside Tune's experiment (``--resume``, ``sync``).
* ``session``, ``callbacks``, ``searcher``: the Ray session, the driver's Tune
  callbacks (progress, prompt run closing) and the resumable Optuna searcher.

Ray is imported only inside functions (and by ``callbacks`` and ``searcher``,
which only a running search imports). The names below are imported on first use:
every trial process imports this package (its trainable is ``trial.run_trial``),
and it should not pay for ``search``'s reports and statistics it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.tuning.search import SearchOutcome, resolve_trials, run_search, sync_search
    from hemotune.tuning.state import STATE_FILE, find_resumable, load_resumable_space
    from hemotune.tuning.trial import TrialJob, run_trial

#: Public name -> the submodule that defines it.
_HOMES = {
    "SearchOutcome": "search",
    "resolve_trials": "search",
    "run_search": "search",
    "sync_search": "search",
    "STATE_FILE": "state",
    "find_resumable": "state",
    "load_resumable_space": "state",
    "TrialJob": "trial",
    "run_trial": "trial",
}


def __getattr__(name: str) -> Any:
    """Import a public name's submodule when the name is first used."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


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
