"""``image_classification``: one PyTorch loop for timm and Ultralytics classifiers.

Every model (timm by name, or an Ultralytics YOLO ``-cls`` network built from its
yaml) trains in the same loop, so class weights, focal loss, the class-balanced
sampler, gradient accumulation, AMP, metrics and checkpoints are identical
across models. The parameters, dataset options and metric names are declared
here (torch-free, so validating a search space stays cheap); the loop lives in
``hemotune.trainers.cls_train`` and the data preparation in
``hemotune.data.imagefolder``. See docs/classification.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemotune.errors import DataError, UsageError
from hemotune.trainers.base import Metrics, ParamSpec, PreparedData, Report, Trainer, TrialContext
from hemotune.trainers.cls_losses import CLASS_WEIGHTINGS
from hemotune.trainers.cls_metrics import AGGREGATE_METRICS, PER_CLASS_METRICS, metric_class_names
from hemotune.trainers.cls_models import MODEL_NAMES, MODELS

OPTIMIZERS = ("SGD", "Adam", "AdamW")
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


def _metric_names() -> tuple[str, ...]:
    return (*(f"val/{m}" for m in AGGREGATE_METRICS), "val/loss", "train/loss", "lr")


class ImageClassificationTrainer(Trainer):
    name = "image_classification"
    task = "classify"
    description = "Image classification (timm and Ultralytics YOLO-cls models) in one PyTorch loop."
    params = {
        "model": ParamSpec(
            "str", "network (timm or Ultralytics YOLO-cls), from scratch", choices=MODEL_NAMES
        ),
        "pretrained": ParamSpec(
            "str",
            "path to a weights file on disk to start from ('' = from scratch; never downloaded)",
            searchable=False,
        ),
        "optimizer": ParamSpec("str", "optimizer", choices=OPTIMIZERS),
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
        "accumulate_steps": ParamSpec(
            "int", "micro-batches per optimizer step (gradient accumulation)", low=1
        ),
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
            "str", "metric choosing the best epoch (loss: lowest, others: highest)", searchable=False
        ),
        "positive_class": ParamSpec(
            "str", "binary tasks: class whose recall is the sensitivity", searchable=False
        ),
        "epochs": ParamSpec("int", "number of epochs", low=1, searchable=False),
        "seed": ParamSpec("int", "random seed", searchable=False),
        "data": ParamSpec("str", "prepared dataset folder", searchable=False),
    }
    dataset_options = {
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
    metrics = _metric_names()
    metric_prefixes = tuple(f"val/{m}/" for m in PER_CLASS_METRICS)
    dataset_formats = ("auto", "imagefolder")

    # ------------------------------------------------------------------ validation

    def validate(self, fixed: Mapping[str, Any], searched: Collection[str]) -> list[str]:
        problems = []
        best = fixed.get("best_metric")
        if best is not None and not self.is_known_metric(str(best)):
            problems.append(
                f"best_metric {best!r} is not a reported metric; allowed: {', '.join(self.metrics)} "
                f"or a per-class metric starting with {', '.join(self.metric_prefixes)}"
            )
        if fixed.get("pretrained") and "model" in searched:
            problems.append("pretrained weights fit one architecture: fix model when pretrained is set")
        model, imgsz = fixed.get("model"), fixed.get("imgsz")
        if model in MODELS and isinstance(imgsz, int) and imgsz < MODELS[str(model)].min_imgsz:
            problems.append(f"model {model} needs imgsz >= {MODELS[str(model)].min_imgsz}, got {imgsz}")
        return problems

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Every value the trial runs with (defaults filled in), plus the scaled ``lr`` and ``effective_batch``."""
        out = {**DEFAULTS, **dict(params)}
        batch, steps = int(out["batch"]), int(out["accumulate_steps"])
        out["effective_batch"] = batch * steps
        out["lr"] = float(out["base_lr"]) * batch * steps / int(out["reference_batch"])
        return out

    # ------------------------------------------------------------------ data

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        """Scan, check and cache the image folder once (see ``hemotune.data.imagefolder``)."""
        from hemotune.data.imagefolder import DEFAULT_CACHE_IMGSZ, prepare_imagefolder

        fmt = dataset.get("format", "auto")
        if fmt not in self.dataset_formats:
            raise DataError(
                f"dataset.format {fmt!r} is not allowed; allowed: {', '.join(self.dataset_formats)}"
            )
        self._check_params_before_data(dataset, params, DEFAULT_CACHE_IMGSZ)
        prepared = prepare_imagefolder(dataset, Path(cache_dir))
        self._check_params_against_classes(params, prepared.classes, prepared.path)
        return PreparedData(
            path=prepared.path,
            fingerprint=prepared.fingerprint,
            source=str(dataset.get("path")),
            summary={
                "classes": list(prepared.classes),
                "num_classes": len(prepared.classes),
                "counts": {s: dict(c) for s, c in prepared.counts.items()},
            },
            report_path=prepared.report_path,
        )

    @staticmethod
    def _check_params_before_data(
        dataset: Mapping[str, Any], params: Mapping[str, Any], default_size: int
    ) -> None:
        from hemotune.trainers.cls_models import pretrained_path

        cache_imgsz = int(dataset.get("cache_imgsz") or default_size)
        imgsz = params.get("imgsz")
        if isinstance(imgsz, int) and imgsz > cache_imgsz:
            raise UsageError(
                f"imgsz {imgsz} is larger than the dataset's cache_imgsz {cache_imgsz}: "
                f"set dataset.cache_imgsz >= {imgsz} (images are decoded once at that size)"
            )
        if params.get("pretrained"):
            pretrained_path(str(params["pretrained"]))

    @staticmethod
    def _check_params_against_classes(params: Mapping[str, Any], classes: Sequence[str], where: Path) -> None:
        positive = params.get("positive_class")
        if positive and positive not in classes:
            raise DataError(
                f"positive_class {positive!r} is not a class of the dataset ({where}); classes: "
                f"{', '.join(classes)}"
            )
        if positive and len(classes) != 2:
            raise DataError(
                f"positive_class is for binary tasks; the dataset has {len(classes)} classes: "
                f"{', '.join(classes)}"
            )
        best = str(params.get("best_metric") or "")
        for prefix in (f"val/{m}/" for m in PER_CLASS_METRICS):
            if best.startswith(prefix) and best[len(prefix) :] not in metric_class_names(classes):
                raise DataError(
                    f"best_metric {best!r} names no class of the dataset; classes: "
                    f"{', '.join(metric_class_names(classes))}"
                )

    # ------------------------------------------------------------------ training

    def fit(self, params: Mapping[str, Any], report: Report, context: TrialContext | None = None) -> Metrics:
        from hemotune.trainers.cls_train import train

        return train(self.resolve(params), report, context or TrialContext.temporary())
