"""The extra step of an evaluation trial (``hemotune evaluate``): after training, score the test split.

``run_trial`` trains as in any search; when its job carries a ``TestJob``, it then
calls ``evaluate_trained``: the trainer evaluates the best epoch's weights
(``<workdir>/weights/best.pt``, where every trainer keeps them) on the test split,
the test metrics go to the trial's MLflow child run (with the seed as a tag) and to
Ray Tune as the trial's last result, where ``hemotune evaluate`` reads them without
MLflow. Per-image statistics, when the trainer's ``evaluate_details`` saved them
(``details["per_image_file"]``: an ``.npz`` that ``Trainer.objective_on_subset`` reads),
are logged as ``evaluation/per_image.npz`` for the paired bootstrap over images; the
driver recomputes the objective over resampled images from them (``image_scores``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemotune.data.prepared import PreparedData
from hemotune.evidence import ImageScores
from hemotune.tracking import TrialRun
from hemotune.trainers import Trainer, TrialContext
from hemotune.trainers.base import Trainer as BaseTrainer

#: Resolved parameter values, as trainers receive them.
Values = Mapping[str, Any]
#: Where every trainer keeps the best epoch's weights, under the trial's work folder.
BEST_WEIGHTS = Path("weights") / "best.pt"
PER_IMAGE_ARTIFACT = "evaluation/per_image.npz"
TAG_SEED = "hemotune.seed"


@dataclass(frozen=True)
class TestJob:
    """The test split of an evaluation: prepared once on the driver (rebuilt on a node that lacks it)."""

    data: PreparedData
    test_path: str | None
    dataset: Mapping[str, Any]
    params: Mapping[str, Any]
    cache_dir: str
    split: str = "test"


def evaluate_trained(
    trainer: Trainer, test: TestJob, resolved: Mapping[str, Any], context: TrialContext, run: TrialRun
) -> dict[str, float]:
    """Test metrics of the trial's best weights, logged to MLflow and reported to Tune."""
    from ray import tune

    weights = context.workdir / BEST_WEIGHTS
    if not weights.exists():
        raise RuntimeError(f"training left no best weights at {weights}: nothing to evaluate")
    details = _details(trainer, weights, _test_data(trainer, test), test.split, resolved, context)
    metrics = {k: float(v) for k, v in details["metrics"].items()}
    run.set_tags({TAG_SEED: int(resolved.get("seed", context.seed))})
    per_image = details.get("per_image_file")
    if per_image and Path(str(per_image)).is_file():
        run.log_artifacts({PER_IMAGE_ARTIFACT: Path(str(per_image))})
    tune.report(dict(metrics))  # the trial's last result: what `hemotune evaluate` reads back
    return metrics


def _details(
    trainer: Trainer, weights: Path, data: PreparedData, split: str, resolved: Values, context: TrialContext
) -> dict[str, Any]:
    """``evaluate_details`` when the trainer has it, else ``evaluate``'s metrics alone."""
    if type(trainer).evaluate_details is not BaseTrainer.evaluate_details:
        return dict(trainer.evaluate_details(weights, data, split, resolved, context))
    return {"metrics": trainer.evaluate(weights, data, split, resolved, context)}


def _test_data(trainer: Trainer, test: TestJob) -> PreparedData:
    """The driver's prepared test data, or the same prepared again on a node that lacks it."""
    if Path(test.data.path).exists():
        return test.data
    cache_dir = Path(os.environ.get("HEMOTUNE_CACHE_DIR") or test.cache_dir)
    prepared = trainer.prepare_test_data(test.dataset, test.test_path, test.params, cache_dir)
    if prepared is None or prepared.fingerprint != test.data.fingerprint:
        raise RuntimeError(f"the test data prepared on {os.uname().nodename} differs from the driver's")
    return prepared


def image_scores(trainer: Trainer, per_image: Mapping[str, Any] | None, metric: str) -> ImageScores | None:
    """The evaluation's test images and ``metric`` recomputed over any resample, by the trainer."""
    if not per_image or "images" not in per_image:
        return None
    return ImageScores(
        images=[str(name) for name in per_image["images"]],
        score=lambda indices: trainer.objective_on_subset(per_image, metric, indices),
    )
