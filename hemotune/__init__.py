"""hemotune: distributed hyperparameter search for blood-cell deep learning.

The public API is small and imports nothing heavy until used::

    from hemotune import load_space, run_search, RunSettings
    space = load_space("bcd_loss_weights", preset="smoke", data="data/bccd")
    outcome = run_search(space, RunSettings(results_dir="results"))

``import hemotune`` does not import torch, ray, ultralytics or mlflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hemotune._version import __version__

__all__ = [
    "RunSettings",
    "SearchSpace",
    "__version__",
    "available_trainers",
    "get_trainer",
    "load_space",
    "run_search",
    "sync_search",
]

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.config import RunSettings, SearchSpace
    from hemotune.spaces import load_space
    from hemotune.trainers import available_trainers, get_trainer
    from hemotune.tuning import run_search, sync_search

_LAZY = {
    "RunSettings": "hemotune.config",
    "SearchSpace": "hemotune.config",
    "load_space": "hemotune.spaces",
    "available_trainers": "hemotune.trainers",
    "get_trainer": "hemotune.trainers",
    "run_search": "hemotune.tuning",
    "sync_search": "hemotune.tuning",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hemotune' has no attribute {name!r}")
