"""Trainers by name: ``get_trainer("yolo_detection")`` imports the trainer's module on first use.

Trainer declaration modules keep torch, ultralytics and timm imports inside
functions, so looking a trainer up (to validate a search space) stays cheap.
Third-party trainers register with ``register_trainer(name, "package.module:ClassName")``.
"""

from __future__ import annotations

import importlib

from hemotune.errors import UsageError
from hemotune.trainers.base import Trainer

_REGISTRY: dict[str, str] = {
    "yolo_detection": "hemotune.trainers.yolo_detection:YoloDetectionTrainer",
    "image_classification": "hemotune.trainers.image_classification:ImageClassificationTrainer",
    "synthetic_curves": "hemotune.testing.synthetic:SyntheticCurvesTrainer",
}
_INSTANCES: dict[str, Trainer] = {}


def register_trainer(name: str, target: str) -> None:
    """Register ``target`` (``"module:Class"``) under ``name``; re-registering replaces it."""
    if ":" not in target:
        raise ValueError(f"trainer target must look like 'package.module:ClassName', got {target!r}")
    _REGISTRY[name] = target
    _INSTANCES.pop(name, None)


def available_trainers() -> list[str]:
    """The registered trainer names, sorted."""
    return sorted(_REGISTRY)


def get_trainer(name: str) -> Trainer:
    """The trainer registered as ``name``; an unknown name lists the valid ones."""
    if name not in _REGISTRY:
        raise UsageError(f"unknown trainer {name!r}; available: {', '.join(available_trainers())}")
    if name not in _INSTANCES:
        module_name, class_name = _REGISTRY[name].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        _INSTANCES[name] = cls()
    return _INSTANCES[name]
