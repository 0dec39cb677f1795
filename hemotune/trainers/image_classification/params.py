"""What ``image_classification`` accepts and reports: defaults, parameter tables, dataset options, metrics.

Torch-free on purpose: the registry imports this (through the trainer class) to
validate search spaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hemotune.trainers.base import COMMON_PARAMS, ParamSpec
from hemotune.trainers.image_classification.losses import CLASS_WEIGHTINGS
from hemotune.trainers.image_classification.metrics import AGGREGATE_METRICS, PER_CLASS_METRICS
from hemotune.trainers.image_classification.models import MODEL_NAMES

#: optimizer name -> (``torch.optim`` class, how ``momentum`` is passed: as SGD's ``momentum``
#: or as Adam's beta1, ``betas=(momentum, 0.999)``).
OPTIMIZERS: dict[str, tuple[str, str]] = {
    "SGD": ("SGD", "momentum"),
    "Adam": ("Adam", "beta1"),
    "AdamW": ("AdamW", "beta1"),
}
LR_SCHEDULES = ("cosine", "constant")

#: Values a trial runs with when a search space does not set them.
DEFAULTS: dict[str, Any] = {
    "model": "resnet18",
    "pretrained": "",
    "optimizer": "AdamW",
    "base_lr": 1e-3,
    "reference_batch": 32,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "batch": 32,
    "accumulate_steps": 1,
    "imgsz": 128,
    "augment": True,
    "class_weighting": "none",
    "class_weight_beta": 0.999,
    "focal_gamma": 0.0,
    "label_smoothing": 0.0,
    "balanced_sampling": False,
    "segmentation": False,
    "lr_schedule": "cosine",
    "amp": True,
    "best_metric": "val/macro_f1",
    "positive_class": "",
    "epochs": 10,
    "seed": 0,
}


@dataclass(frozen=True)
class MappingSpec(ParamSpec):
    """A dataset option whose value is a mapping of names to names (a class map)."""

    def problems(self, value: Any) -> list[str]:
        if isinstance(value, str):
            pairs = [p.strip() for p in value.split(",") if p.strip()]
            bad = [p for p in pairs if p.count(":") != 1]
            return [f"entries must look like Source:Target, bad: {bad}"] if bad else []
        if not isinstance(value, Mapping):
            return [f"must be a mapping like {{Benign: Normal, Pro: Cancer}}, got {value!r}"]
        bad = [k for k, v in value.items() if not isinstance(v, str)]
        return [f"values must be class names (strings); bad keys: {bad}"] if bad else []


@dataclass(frozen=True)
class SourcesSpec(ParamSpec):
    """A dataset option listing extra source folders to merge."""

    def problems(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            return [f"must be a list of mappings like [{{path: ..., class_map: {{...}}}}], got {value!r}"]
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
                out.append(f"[{i}] must be a mapping with a path (and optionally class_map, drop_unmapped)")
        return out


PARAMS: Mapping[str, ParamSpec] = {
    "model": ParamSpec("str", "network (timm or Ultralytics YOLO-cls), from scratch", choices=MODEL_NAMES),
    "pretrained": ParamSpec(
        "str",
        "path to a weights file on disk to start from ('' = from scratch; never downloaded)",
        searchable=False,
    ),
    "optimizer": ParamSpec("str", "optimizer", choices=tuple(OPTIMIZERS)),
    "base_lr": ParamSpec(
        "float",
        "learning rate at reference_batch; lr = base_lr * batch * accumulate_steps / reference_batch",
        low=0.0,
        low_exclusive=True,
        high=1.0,
    ),
    "reference_batch": ParamSpec(
        "int", "batch size base_lr is meant for (linear scaling rule)", low=1, searchable=False
    ),
    "momentum": ParamSpec("float", "SGD momentum; beta1 of Adam/AdamW", low=0.0, high=0.999),
    "weight_decay": ParamSpec(
        "float", "weight decay (not applied to biases and norm layers)", low=0.0, high=1.0
    ),
    "batch": ParamSpec("int", "micro-batch size (images per forward pass)", low=2),
    "accumulate_steps": ParamSpec("int", "micro-batches per optimizer step (gradient accumulation)", low=1),
    "imgsz": ParamSpec("int", "training image size in pixels (square); <= dataset cache_imgsz", low=16),
    "augment": ParamSpec("bool", "random flips and 90-degree rotations during training"),
    "class_weighting": ParamSpec("str", "loss weights from train counts", choices=CLASS_WEIGHTINGS),
    "class_weight_beta": ParamSpec("float", "beta of effective_number weighting", low=0.0, high=0.99999),
    "focal_gamma": ParamSpec("float", "focal-loss gamma (0 = cross-entropy)", low=0.0, high=10.0),
    "label_smoothing": ParamSpec("float", "label smoothing of the training loss", low=0.0, high=0.5),
    "balanced_sampling": ParamSpec("bool", "class-balanced WeightedRandomSampler (with replacement)"),
    "segmentation": ParamSpec("bool", "black out everything but the HSV white-cell mask"),
    "lr_schedule": ParamSpec("str", "per-epoch learning-rate schedule", choices=LR_SCHEDULES),
    "amp": ParamSpec("bool", "mixed precision on CUDA (always off on CPU)", searchable=False),
    "best_metric": ParamSpec(
        "str",
        "metric choosing the best epoch when the search names no objective (loss: lowest, others: highest)",
        searchable=False,
    ),
    "positive_class": ParamSpec(
        "str", "binary tasks: class whose recall is the sensitivity", searchable=False
    ),
    **COMMON_PARAMS,
}

DATASET_OPTIONS: Mapping[str, ParamSpec] = {
    "layout": ParamSpec(
        "str",
        "auto, splits (train|val|test/<class>/), all (all/<class>/), flat (<class>/)",
        choices=("auto", "splits", "all", "flat"),
    ),
    "train_fraction": ParamSpec(
        "float", "fraction of each class for train (layouts all/flat)", low=0.0, high=1.0
    ),
    "val_fraction": ParamSpec("float", "fraction for validation", low=0.0, high=1.0),
    "test_fraction": ParamSpec("float", "fraction held out as test", low=0.0, high=1.0),
    "split_seed": ParamSpec("int", "seed of the stratified split (recorded in split.csv)", low=0),
    "class_map": MappingSpec("mapping", "rename/merge classes: {source class: task class}"),
    "drop_unmapped": ParamSpec("bool", "leave out classes the class_map does not name (else an error)"),
    "sources": SourcesSpec("list", "extra folders to merge: [{path, class_map, drop_unmapped, layout}]"),
    "metadata_csv": ParamSpec("str", "CSV with a patient id per image (patient-level split)"),
    "metadata_path_column": ParamSpec("str", "metadata column with the image path (default path)"),
    "metadata_group_column": ParamSpec("str", "metadata column with the patient id (default patient_id)"),
    "cache_imgsz": ParamSpec("int", "size images are decoded to once (trials resize from it)", low=16),
    "max_images_per_class": ParamSpec("int", "use at most this many images per class (0 = all)", low=0),
    "bad_images": ParamSpec(
        "str", "corrupt/truncated images: drop (reported) or error", choices=("drop", "error")
    ),
    "seg_hue_low": ParamSpec("int", "segmentation: lowest OpenCV hue (0-179) kept", low=0, high=179),
    "seg_hue_high": ParamSpec("int", "segmentation: highest OpenCV hue kept", low=0, high=179),
    "seg_sat_min": ParamSpec(
        "int", "segmentation: minimum saturation (0-255; Otsu may raise it)", low=0, high=255
    ),
}
DATASET_FORMATS = ("auto", "imagefolder")

#: Metrics reported every epoch (objective candidates), plus the per-class families below.
METRICS: tuple[str, ...] = (*(f"val/{m}" for m in AGGREGATE_METRICS), "val/loss", "train/loss", "lr")
PER_CLASS_PREFIXES: tuple[str, ...] = tuple(f"val/{m}/" for m in PER_CLASS_METRICS)


def default_mode(metric: str) -> str:
    """The direction of ``best_metric``: a loss is best lowest, everything else highest."""
    return "min" if metric.endswith("loss") else "max"
