"""``image_classification``: timm and Ultralytics YOLO-cls classifiers trained in one PyTorch loop.

``trainer.py`` holds the trainer, ``params.py`` what it accepts and reports,
``models.py`` the model registry, ``losses.py`` class weights and the focal loss,
``metrics.py`` the metrics; the loop (torch) is ``setup.py``, ``batches.py``,
``loop.py`` and ``checkpoint.py``, imported only when a trial trains.
"""

from __future__ import annotations

from hemotune.trainers.image_classification.params import DEFAULTS, OPTIMIZERS
from hemotune.trainers.image_classification.trainer import ImageClassificationTrainer

__all__ = ["DEFAULTS", "OPTIMIZERS", "ImageClassificationTrainer"]
