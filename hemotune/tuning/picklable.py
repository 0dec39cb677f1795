"""Optuna samplers that survive Tune's pickling of the searcher.

Ray Tune pickles the searcher, and with it the sampler, when the Tuner is built and at
every experiment checkpoint (``OptunaSearch.save`` uses plain ``pickle``). Optuna 5.1's
genetic samplers (``BaseGASampler``) keep a ``threading.Lock`` that cannot be pickled,
so ``sampler: nsga2`` failed before its first trial (``TypeError: cannot pickle
'_thread.lock' object``). ``NSGAIISampler`` here leaves the lock out of its state and
makes a new one when unpickled; everything else, the keys it writes into the study
included, is Optuna's.

Imported only by ``samplers.build_sampler`` (it imports Optuna).
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

_LOCK = "_thread_lock"


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """``optuna.samplers.NSGAIISampler`` that pickles (its thread lock is made anew)."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop(_LOCK, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__[_LOCK] = threading.Lock()  # unused by Optuna before 5.1


# Optuna names the study's generation keys after the class (``__init_subclass__``):
# keep Optuna's own names, so a journal written by either class resumes with the other.
for _key in ("_GENERATION_KEY", "_PARENT_CACHE_KEY_PREFIX"):
    if hasattr(optuna.samplers.NSGAIISampler, _key):
        setattr(NSGAIISampler, _key, getattr(optuna.samplers.NSGAIISampler, _key))
