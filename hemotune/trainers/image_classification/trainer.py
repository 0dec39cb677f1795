"""``image_classification``: one PyTorch loop for timm and Ultralytics classifiers.

Every model (timm by name, or an Ultralytics YOLO ``-cls`` network built from its
yaml) trains in the same loop, so class weights, focal loss, the class-balanced
sampler, gradient accumulation, AMP, metrics and checkpoints are identical
across models. The parameters, dataset options and metric names are declared
in ``params.py`` (torch-free, so validating a search space stays cheap); the
loop lives in ``loop.py`` and the data preparation in ``hemotune.data.imagefolder``.
The best epoch is the best by the search objective, else by ``best_metric``.
See docs/classification.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from hemotune.errors import DataError, UsageError
from hemotune.trainers.base import Metrics, PreparedData, Report, Resolved, Trainer, TrialContext
from hemotune.trainers.image_classification.metrics import metric_class_names
from hemotune.trainers.image_classification.models import MODELS
from hemotune.trainers.image_classification.params import (
    DATASET_FORMATS,
    DATASET_OPTIONS,
    DEFAULTS,
    METRICS,
    PARAMS,
    PER_CLASS_PREFIXES,
)


class ImageClassificationTrainer(Trainer):
    """timm and Ultralytics classifiers in one loop; the parameters are declared in ``params.py``."""

    name = "image_classification"
    task = "classify"
    description = "Image classification (timm and Ultralytics YOLO-cls models) in one PyTorch loop."
    params = PARAMS
    dataset_options = DATASET_OPTIONS
    metrics = METRICS
    metric_prefixes = PER_CLASS_PREFIXES
    dataset_formats = DATASET_FORMATS

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

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        """Scan, check and cache the image folder once (see ``hemotune.data.imagefolder``)."""
        from hemotune.data.imagefolder import DEFAULT_CACHE_IMGSZ, prepare_imagefolder

        problem = self.format_problem(dataset)
        if problem is not None:
            raise DataError(" ".join(problem))
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
        from hemotune.trainers.image_classification.models import pretrained_path

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
        for prefix in PER_CLASS_PREFIXES:
            if best.startswith(prefix) and best[len(prefix) :] not in metric_class_names(classes):
                raise DataError(
                    f"best_metric {best!r} names no class of the dataset; classes: "
                    f"{', '.join(metric_class_names(classes))}"
                )

    def evaluate_details(
        self, weights: Path, data: PreparedData, split: str, resolved: Resolved, context: TrialContext
    ) -> dict[str, Any]:
        """``best.pt`` scored on ``split`` with training's metrics (``evaluate.py``, imported here: torch)."""
        from hemotune.trainers.image_classification.evaluate import evaluate_classifier

        return evaluate_classifier(Path(weights), data, split, resolved, context)

    def objective_on_subset(self, per_image: Mapping[str, Any], metric: str, indices: Any) -> float:
        """``metric`` over images ``indices`` from their labels and predictions (``metrics.subset_metric``)."""
        from hemotune.trainers.image_classification.metrics import subset_metric

        return subset_metric(per_image, metric, indices)

    def prepare_test_data(
        self, dataset: Mapping[str, Any], test_path: str | None, params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData | None:
        """``test_path`` as a test-only cache (``hemotune.data.imagefolder.testset``), else the dataset's test split."""
        from hemotune.data.imagefolder.testset import prepare_test_folder
        from hemotune.data.prepared import with_test_summary

        training = self.prepare_data(dataset, params, cache_dir)
        classes = list(training.summary["classes"])
        if test_path is None:
            counts = training.summary["counts"].get("test")
            return None if counts is None else with_test_summary(training, classes, counts)
        found = prepare_test_folder(dataset, test_path, classes, Path(cache_dir))
        prepared = PreparedData(
            path=found.path,
            fingerprint=found.fingerprint,
            source=str(test_path),
            summary={"classes": classes, "num_classes": len(classes), "counts": {"test": dict(found.counts)}},
            report_path=found.report_path,
        )
        return with_test_summary(prepared, classes, found.counts)

    def train(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
        """Train one resolved configuration in the PyTorch loop (``loop.py``, imported here: it imports torch)."""
        from hemotune.trainers.image_classification.loop import train

        return train(resolved, report, context)
