"""THE one place a search-space file becomes validated data and Optuna distributions.

A search-space file is YAML::

    name: bcd_loss_weights
    trainer: yolo_detection
    dataset: {path: data/bccd, format: voc}
    objective: {metric: val/mAP50-95, mode: max}
    fixed: {model: yolo11n.yaml, imgsz: 416, batch: 16}
    parameters:
      box: {type: float, low: 2.5, high: 22.5, log: true}
      optimizer: {type: categorical, choices: [SGD, AdamW]}
    budget: {num_samples: 24, max_concurrent: 2, epochs: 120, grace_period: 10, reduction_factor: 3}
    resources: {cpu: 2, gpu: 0.5}
    seed: 0
    points_to_evaluate: [{box: 7.5, optimizer: SGD}]
    presets: {smoke: {budget: {num_samples: 4, epochs: 2}, fixed: {imgsz: 96}}}

The way through: ``files`` finds and parses the file, ``overlays`` applies a preset
and ``--set`` overrides, ``validate`` checks it section by section (``sections``,
``distributions``, collecting problems on a ``checker.Checker``) against the
trainer's declared parameters, and ``conversion`` turns the result into Optuna
distributions or a plain document. No heavy imports here: validating a space
must take well under a second (Optuna is imported only by ``to_optuna``).
"""

from __future__ import annotations

from hemotune.spaces.conversion import optuna_space, space_document, to_optuna
from hemotune.spaces.files import find_space_file, list_spaces, parse_yaml, read_space_file, space_dirs
from hemotune.spaces.load import load_space, validate_file
from hemotune.spaces.overlays import (
    BUILTIN_PRESETS,
    PRESET_KEYS,
    TOP_LEVEL_KEYS,
    apply_preset,
    apply_sets,
    deep_merge,
)
from hemotune.spaces.sections import BUDGET_KEYS, RESERVED_PARAMS
from hemotune.spaces.validate import validate_space

__all__ = [
    "BUDGET_KEYS",
    "BUILTIN_PRESETS",
    "PRESET_KEYS",
    "RESERVED_PARAMS",
    "TOP_LEVEL_KEYS",
    "apply_preset",
    "apply_sets",
    "deep_merge",
    "find_space_file",
    "list_spaces",
    "load_space",
    "optuna_space",
    "parse_yaml",
    "read_space_file",
    "space_dirs",
    "space_document",
    "to_optuna",
    "validate_file",
    "validate_space",
]
