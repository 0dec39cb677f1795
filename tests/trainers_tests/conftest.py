"""Fixtures the detection trainer tests share: the trainer and a tiny BCCD set converted once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hemotune.trainers import get_trainer
from hemotune.trainers.yolo_detection import YoloDetectionTrainer

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


@pytest.fixture(scope="module")
def trainer() -> YoloDetectionTrainer:
    found = get_trainer("yolo_detection")
    assert isinstance(found, YoloDetectionTrainer)
    return found


@pytest.fixture(scope="module")
def tiny_bccd(bccd_dir: Path, cache_dir: Path) -> str:
    """12 train and 6 val BCCD images, converted once (one cache entry for every test file here)."""
    prepared = get_trainer("yolo_detection").prepare_data(
        {
            "path": str(bccd_dir),
            "format": "voc",
            "classes": BCCD_CLASSES,
            "max_train_images": 12,
            "max_val_images": 6,
        },
        {},
        cache_dir,
    )
    return str(prepared.path)
