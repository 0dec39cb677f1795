"""What ``yolo_detection`` accepts and reports: defaults, parameter tables, dataset options, metric names.

Torch-free on purpose: the registry imports this (through the trainer class) to
validate search spaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hemotune.trainers.base import COMMON_PARAMS, ParamSpec

#: hemotune's optimizer names -> the torch class Ultralytics builds (it matches names case-insensitively).
OPTIMIZERS: dict[str, str] = {
    "SGD": "SGD",
    "Adam": "Adam",
    "AdamW": "AdamW",
    "NAdam": "NAdam",
    "RAdam": "RAdam",
    "RMSProp": "RMSprop",
}
#: lr_scaling -> exponent p of (effective_batch / reference_batch) ** p.
LR_SCALING = {"linear": 1.0, "sqrt": 0.5, "none": 0.0}
#: Ultralytics' grid size: imgsz must be a multiple of it or Ultralytics changes it.
IMGSZ_STRIDE = 32
#: The metric choosing the best epoch (and weights/best.pt) when the search names none.
DEFAULT_OBJECTIVE = "val/mAP50-95"

#: Values used for parameters a trial does not set: Ultralytics' defaults, except
#: ``optimizer`` (SGD, never ``auto``) and ``patience`` (0: no early stop; ASHA decides).
DEFAULTS: dict[str, Any] = {
    "model": "yolo11n.yaml",
    "imgsz": 640,
    "batch": 16,
    "accumulate_steps": 4,
    "base_lr": 0.01,
    "reference_batch": 64,
    "lr_scaling": "linear",
    "lrf": 0.01,
    "optimizer": "SGD",
    "momentum": 0.937,
    "weight_decay": 0.0005,
    "warmup_epochs": 3.0,
    "warmup_momentum": 0.8,
    "warmup_bias_lr": 0.1,
    "box": 7.5,
    "cls": 0.5,
    "dfl": 1.5,
    "cos_lr": False,
    "close_mosaic": 10,
    "mosaic": 1.0,
    "mixup": 0.0,
    "fliplr": 0.5,
    "flipud": 0.0,
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "scale": 0.5,
    "translate": 0.1,
    "degrees": 0.0,
    "amp": True,
    "patience": 0,
    "deterministic": True,
    "epochs": 100,
    "seed": 0,
}
#: Augmentation parameters passed to Ultralytics under the same name.
AUGMENTATIONS = (
    "mosaic",
    "mixup",
    "fliplr",
    "flipud",
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "scale",
    "translate",
    "degrees",
)


@dataclass(frozen=True)
class ClassListSpec(ParamSpec):
    """A dataset option holding a list of class names (``[RBC, WBC, Platelets]``)."""

    def problems(self, value: Any) -> list[str]:
        example = "a non-empty list of class names, e.g. [RBC, WBC, Platelets]"
        if not isinstance(value, (list, tuple)) or not value:
            return [f"must be {example}, got {value!r}"]
        if not all(isinstance(v, str) and v.strip() for v in value):
            return [f"must be {example}; every name a non-empty string, got {value!r}"]
        keys = ["".join(v.split()).casefold() for v in value]
        if len(set(keys)) != len(keys):
            return [f"has duplicate names (ignoring case): {list(value)!r}"]
        return []


def _unit(help_text: str) -> ParamSpec:
    return ParamSpec("float", help_text, low=0.0, high=1.0)


def _gain(help_text: str) -> ParamSpec:
    return ParamSpec("float", help_text, low=0.0, low_exclusive=True)


PARAMS: Mapping[str, ParamSpec] = {
    "model": ParamSpec(
        "str", "model .yaml (built from scratch) or a .pt weights file on disk; never downloaded"
    ),
    "imgsz": ParamSpec(
        "int", f"square training and validation image size, a multiple of {IMGSZ_STRIDE}", low=32
    ),
    "batch": ParamSpec("int", "micro-batch: images per forward/backward pass", low=1),
    "accumulate_steps": ParamSpec(
        "int", "micro-batches whose gradients are summed per optimizer step", low=1
    ),
    "base_lr": ParamSpec(
        "float",
        "learning rate at reference_batch images per step (lr0 is scaled from it)",
        low=0.0,
        low_exclusive=True,
    ),
    "reference_batch": ParamSpec(
        "int",
        "the images per optimizer step base_lr is defined at (Ultralytics' nbs, 64)",
        low=1,
        searchable=False,
    ),
    "lr_scaling": ParamSpec(
        "str",
        "how lr0 follows batch*accumulate_steps/reference_batch: linear (the study), sqrt or none",
        choices=tuple(LR_SCALING),
    ),
    "lrf": ParamSpec("float", "final learning rate as a fraction of lr0", low=0.0, high=1.0),
    "optimizer": ParamSpec("str", "optimizer (never auto)", choices=tuple(OPTIMIZERS)),
    "momentum": ParamSpec("float", "SGD momentum / Adam beta1", low=0.0, high=1.0),
    "weight_decay": ParamSpec("float", "weight decay (not rescaled: nbs = batch*accumulate_steps)", low=0.0),
    "warmup_epochs": ParamSpec(
        "float", "warm-up epochs (Ultralytics keeps the last epoch out of warm-up)", low=0.0
    ),
    "warmup_momentum": _unit("momentum at the start of warm-up"),
    "warmup_bias_lr": ParamSpec("float", "bias learning rate at the start of warm-up", low=0.0),
    "box": _gain("box (CIoU) loss gain; Ultralytics default 7.5"),
    "cls": _gain("classification loss gain; Ultralytics default 0.5"),
    "dfl": _gain("distribution focal loss gain; Ultralytics default 1.5"),
    "cos_lr": ParamSpec("bool", "cosine instead of linear learning-rate decay"),
    "close_mosaic": ParamSpec("int", "turn mosaic off for the last N epochs", low=0),
    "mosaic": _unit("mosaic augmentation probability"),
    "mixup": _unit("MixUp augmentation probability"),
    "fliplr": _unit("horizontal flip probability"),
    "flipud": _unit("vertical flip probability"),
    "hsv_h": _unit("hue augmentation (fraction)"),
    "hsv_s": _unit("saturation augmentation (fraction)"),
    "hsv_v": _unit("value (brightness) augmentation (fraction)"),
    "scale": ParamSpec("float", "scale augmentation gain (+/-)", low=0.0),
    "translate": _unit("translation augmentation (fraction, +/-)"),
    "degrees": ParamSpec("float", "rotation augmentation (degrees, +/-)", low=0.0, high=180.0),
    "amp": ParamSpec("bool", "mixed precision on CUDA (no effect on CPU)"),
    "workers": ParamSpec(
        "int",
        "dataloader workers (default: the trial's num_workers; Ultralytics uses 0 on CPU)",
        low=0,
        searchable=False,
    ),
    "patience": ParamSpec("int", "Ultralytics early stop after N epochs without improvement (0: off)", low=0),
    "deterministic": ParamSpec("bool", "deterministic torch algorithms", searchable=False),
    **COMMON_PARAMS,
}

DATASET_OPTIONS: Mapping[str, ParamSpec] = {
    "classes": ClassListSpec(
        "list",
        "class names in id order, e.g. [RBC, WBC, Platelets] (default: VOC sorted, YOLO data.yaml order)",
        searchable=False,
    ),
    "val_fraction": ParamSpec(
        "float",
        "val share of a seeded split, used when the source has no train/val split",
        low=0.0,
        high=1.0,
        low_exclusive=True,
        searchable=False,
    ),
    "selection_seed": ParamSpec(
        "int", "seed of the seeded split and of the max_*_images subsets", searchable=False
    ),
    "max_train_images": ParamSpec(
        "int", "keep a seeded subset of this many train images", low=1, searchable=False
    ),
    "max_val_images": ParamSpec(
        "int", "keep a seeded subset of this many val images", low=1, searchable=False
    ),
}
DATASET_FORMATS = ("auto", "voc", "yolo")

#: Metrics reported every epoch (objective candidates), plus ``val/AP50/<class>`` per class.
METRICS = (
    "val/mAP50-95",
    "val/mAP50",
    "val/precision",
    "val/recall",
    "val/box_loss",
    "val/cls_loss",
    "val/dfl_loss",
    "train/box_loss",
    "train/cls_loss",
    "train/dfl_loss",
    "lr",
    "effective_batch",
    "accumulate_steps",
    "epoch_seconds",
)
PER_CLASS_PREFIX = "val/AP50/"
