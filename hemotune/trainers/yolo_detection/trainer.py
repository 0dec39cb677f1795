"""YOLO detection with Ultralytics: one trial = one ``YOLO(model).train(...)`` running exactly its params.

How a parameter reaches Ultralytics (say the box-loss gain): the search-space
file's ``box`` -> the trial's ``params["box"]`` -> ``resolve`` (defaults filled in,
derived values added) -> ``ultralytics_train_args`` (``box=...``, ``args.py``) ->
``YOLO(...).train(**args)`` (``run.py``) -> ``v8DetectionLoss`` multiplies the box loss by it.

Gradient accumulation is not an Ultralytics argument: it runs
``accumulate = max(round(nbs / batch), 1)`` micro-batches per optimizer step. So
``accumulate_steps`` K at micro-batch ``batch`` b is passed as ``nbs = b*K``
(Ultralytics then rescales weight decay by ``b*K/nbs = 1``: unchanged). The
learning rate follows the study's recipe, linear scaling from a reference batch::

    lr0 = base_lr * (batch * accumulate_steps / reference_batch) ** p    # p = 1 (linear), 0.5, 0

Ultralytics' checks of what it really built are in ``guards.py``, the offline
and quiet patches in ``patches.py``. Ultralytics is imported inside ``train``
only: the registry stays cheap.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar

from hemotune.errors import DataError, TrialConfigurationError, UsageError
from hemotune.trainers.base import Metrics, ParamSpec, PreparedData, Report, Resolved, Trainer, TrialContext
from hemotune.trainers.yolo_detection.params import (
    DATASET_FORMATS,
    DATASET_OPTIONS,
    DEFAULTS,
    IMGSZ_STRIDE,
    METRICS,
    OPTIMIZERS,
    PARAMS,
    PER_CLASS_PREFIX,
)
from hemotune.trainers.yolo_detection.rules import effective_warmup_epochs, learning_rate, model_problem


class YoloDetectionTrainer(Trainer):
    """Ultralytics YOLO detection; the parameters are declared in ``params.py``."""

    name = "yolo_detection"
    task = "detect"
    description = "Ultralytics YOLO object detection (YOLO11n from scratch by default) on VOC or YOLO data."
    params: ClassVar[Mapping[str, ParamSpec]] = PARAMS
    dataset_options: ClassVar[Mapping[str, ParamSpec]] = DATASET_OPTIONS
    metrics = METRICS
    metric_prefixes = (PER_CLASS_PREFIX,)
    dataset_formats = DATASET_FORMATS

    def validate(self, fixed: Mapping[str, Any], searched: Collection[str]) -> list[str]:
        problems = []
        model = fixed.get("model")
        if isinstance(model, str) and (problem := model_problem(model)):
            problems.append(problem)
        imgsz = fixed.get("imgsz")
        if isinstance(imgsz, int) and imgsz % IMGSZ_STRIDE:
            problems.append(
                f"imgsz {imgsz} is not a multiple of {IMGSZ_STRIDE} (Ultralytics would change it)"
            )
        return problems

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with defaults filled in and the derived values a trial runs with.

        Adds ``effective_batch`` (= ``nbs``, images per optimizer step), ``lr0``,
        ``ultralytics_optimizer``, ``weight_decay_scale`` (Ultralytics' factor
        ``batch*accumulate/nbs``, always 1 here) and ``warmup_epochs_effective``.
        Raises ``TrialConfigurationError`` for unknown or invalid values.
        """
        values = {**DEFAULTS, **params}
        problems = self.param_problems(values)
        if not problems and values["imgsz"] % IMGSZ_STRIDE:
            problems.append(f"imgsz: {values['imgsz']} is not a multiple of {IMGSZ_STRIDE}")
        if problems:
            raise TrialConfigurationError("invalid yolo_detection parameters: " + "; ".join(problems))
        batch = int(values["batch"])
        effective_batch = batch * int(values["accumulate_steps"])
        # Ultralytics' rule; equals accumulate_steps because nbs = batch * accumulate_steps.
        accumulate = max(round(effective_batch / batch), 1)
        lr0 = learning_rate(
            values["base_lr"], effective_batch, int(values["reference_batch"]), str(values["lr_scaling"])
        )
        return {
            **values,
            "effective_batch": effective_batch,
            "nbs": effective_batch,
            "lr0": lr0,
            "weight_decay_scale": batch * accumulate / effective_batch,
            "warmup_epochs_effective": effective_warmup_epochs(
                values["warmup_epochs"], int(values["epochs"])
            ),
            "ultralytics_optimizer": OPTIMIZERS[str(values["optimizer"])],
        }

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        """Validate and convert the VOC or YOLO set once into ``cache_dir`` (see ``hemotune.data.detection``)."""
        from hemotune.data.detection import prepare_detection_data

        problems = self.dataset_problems(dataset)
        if problems:
            raise DataError("; ".join(f"{key}: {message}" for key, message in problems))
        if "path" not in dataset or not dataset["path"]:
            raise DataError("dataset.path is required")
        options = {k: v for k, v in dataset.items() if k not in ("path", "format") and v is not None}
        data_format = str(dataset.get("format") or "auto")
        return prepare_detection_data(dataset["path"], Path(cache_dir), data_format=data_format, **options)

    def evaluate_details(
        self, weights: Path, data: PreparedData, split: str, resolved: Resolved, context: TrialContext
    ) -> dict[str, Any]:
        """``best.pt`` through Ultralytics' validator on ``split`` (``evaluate.py``, imported here)."""
        from hemotune.trainers.yolo_detection.evaluate import evaluate_detector

        return evaluate_detector(Path(weights), data, split, resolved, context)

    def objective_on_subset(self, per_image: Mapping[str, Any], metric: str, indices: Any) -> float:
        """mAP50-95, mAP50, P, R or AP50 over images ``indices``, by Ultralytics' ``ap_per_class`` (``per_image.py``)."""
        from hemotune.trainers.yolo_detection.per_image import detection_metric

        return detection_metric(per_image, metric, indices)

    def prepare_test_data(
        self, dataset: Mapping[str, Any], test_path: str | None, params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData | None:
        """``test_path`` converted with the training classes (``hemotune.data.detection.testset``), else the
        dataset's declared test split (VOC ``test.txt``, data.yaml ``test``); ``None`` without either."""
        from hemotune.data.detection.testset import prepare_detection_test_set
        from hemotune.data.prepared import with_test_summary

        training = self.prepare_data(dataset, params, cache_dir)
        classes = list(training.summary["classes"])
        if test_path is None:
            counts = training.summary.get("test boxes")
            return None if counts is None else with_test_summary(training, classes, counts)
        found = prepare_detection_test_set(test_path, Path(cache_dir), classes)
        return with_test_summary(found, classes, found.summary["test boxes"])

    def train(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
        """Train one resolved configuration with Ultralytics, reporting after every epoch (see ``run.py``)."""
        from hemotune.trainers.yolo_detection.run import UltralyticsRun

        if "data" not in resolved:
            raise DataError("params['data'] is missing: the prepared dataset folder (from prepare_data)")
        problem = model_problem(str(resolved["model"]))
        if problem:
            raise UsageError(problem)
        return UltralyticsRun(resolved, report, context).run()
