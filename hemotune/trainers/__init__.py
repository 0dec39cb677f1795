"""Trainers behind a registry keyed by name, and the contract they implement.

``hemotune.trainers.base`` states the contract (parameters, ``resolve``/``train``,
``TrialContext``), ``hemotune.trainers.best`` how the best epoch follows the
search objective, and ``hemotune.trainers.registry`` maps names to trainer
classes. One folder per trainer, named by its registry key.
"""

from __future__ import annotations

from hemotune.trainers.base import (
    COMMON_PARAMS,
    Metrics,
    ParamSpec,
    PreparedData,
    Report,
    Trainer,
    TrialContext,
    null_report,
)
from hemotune.trainers.best import BestEpoch
from hemotune.trainers.registry import available_trainers, get_trainer, register_trainer

__all__ = [
    "COMMON_PARAMS",
    "BestEpoch",
    "Metrics",
    "ParamSpec",
    "PreparedData",
    "Report",
    "Trainer",
    "TrialContext",
    "available_trainers",
    "get_trainer",
    "null_report",
    "register_trainer",
]
