"""``yolo_detection`` evaluation through Ultralytics' validator: val reproduces the logged best epoch,
an independent YOLO test set in another class order is remapped, a class it lacks is reported.

The run is tiny (12 BCCD train images, 64 px, 2 epochs from scratch: every mAP is 0 at this scale),
so the agreement is checked on names, classes and values; the agreement on a run that learned
(mAP50-95 0.18) is measured in docs/evaluation.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hemotune.data.detection import read_voc, write_yolo
from hemotune.errors import UsageError
from hemotune.trainers import TrialContext
from hemotune.trainers.yolo_detection import YoloDetectionTrainer

TRAINER = YoloDetectionTrainer()
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]
#: Ultralytics' P and R sit at the confidence of best F1, which moves with best.pt's fp16 weights.
TOLERANCE = {"val/precision": 0.03, "val/recall": 0.03}


def bccd_dataset(bccd_dir: Path) -> dict[str, Any]:
    return {
        "path": str(bccd_dir),
        "format": "voc",
        "classes": BCCD_CLASSES,
        "max_train_images": 12,
        "max_val_images": 6,
    }


def yolo_set(bccd_dir: Path, target: Path, ids: list[str], classes: tuple[str, ...]) -> Path:
    """BCCD images as a YOLO set whose names (and label ids) follow ``classes``; other boxes left out."""
    voc = read_voc(bccd_dir, BCCD_CLASSES)
    images = {
        i: replace(voc.images[i], boxes=tuple(b for b in voc.images[i].boxes if b.label in classes))
        for i in ids
    }
    target.mkdir(parents=True)
    write_yolo(replace(voc, classes=classes, images=images), {"train": ids}, target, target)
    return target


class Recorder:
    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def __call__(self, metrics: Any, *, checkpoint: Path | None = None, artifacts: Any = None) -> None:
        self.metrics.append(dict(metrics))


@pytest.fixture(scope="module")
def trained(bccd_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = TRAINER.prepare_data(bccd_dataset(bccd_dir), {}, cache_dir)
    resolved = TRAINER.resolve(
        {"imgsz": 64, "batch": 4, "accumulate_steps": 2, "epochs": 2, "seed": 0, "data": str(data.path)}
    )
    workdir = tmp_path_factory.mktemp("det-trial")
    recorder = Recorder()
    summary = TRAINER.train(resolved, recorder, TrialContext(workdir=workdir))
    best = recorder.metrics[int(summary["best_epoch"]) - 1]
    return {"data": data, "resolved": resolved, "weights": workdir / "weights" / "best.pt", "best": best}


@pytest.mark.slow
def test_best_weights_on_val_reproduce_the_logged_val_metrics(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    metrics = TRAINER.evaluate(
        trained["weights"], trained["data"], "val", trained["resolved"], TrialContext(workdir=tmp_path)
    )
    expected = ["val/mAP50-95", "val/mAP50", "val/precision", "val/recall"] + [
        f"val/AP50/{c}" for c in BCCD_CLASSES
    ]
    assert sorted(metrics) == sorted(expected)
    for key in expected:
        assert math.isfinite(metrics[key])
        assert metrics[key] == pytest.approx(trained["best"][key], abs=TOLERANCE.get(key, 2e-3)), key
    details = json.loads((tmp_path / "evaluation" / "val.json").read_text())
    assert details["classes"] == BCCD_CLASSES and details["missing_classes"] == []
    assert details["map_over"] == BCCD_CLASSES


@pytest.mark.slow
def test_an_independent_yolo_set_in_another_class_order_is_remapped_and_its_missing_class_reported(
    trained: dict[str, Any], bccd_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    ids = sorted(p.stem for p in (bccd_dir / "JPEGImages").glob("*.jpg"))[-4:]
    other = yolo_set(bccd_dir, tmp_path / "other", ids, ("WBC", "RBC"))
    test = TRAINER.prepare_test_data(bccd_dataset(bccd_dir), str(other), {}, cache_dir)
    assert test is not None and test.summary["missing_classes"] == ["Platelets"]
    details = TRAINER.evaluate_details(
        trained["weights"], test, "test", trained["resolved"], TrialContext(workdir=tmp_path)
    )
    assert sorted(details["metrics"]) == sorted(
        ["test/mAP50-95", "test/mAP50", "test/precision", "test/recall", "test/AP50/RBC", "test/AP50/WBC"]
    )  # no test/AP50/Platelets: a class without boxes has no AP, and mAP is over the other two
    assert details["missing_classes"] == ["Platelets"] and details["map_over"] == ["RBC", "WBC"]
    # The same set prepared as it is (names WBC, RBC) does not match the model's ids: refused, not misread.
    as_is = TRAINER.prepare_data({"path": str(other)}, {}, cache_dir)
    with pytest.raises(UsageError, match="was trained on classes"):
        TRAINER.evaluate(
            trained["weights"], as_is, "val", trained["resolved"], TrialContext(workdir=tmp_path)
        )


def test_a_split_the_data_lacks_is_a_usage_error_naming_the_dataset(
    bccd_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    data = TRAINER.prepare_data(bccd_dataset(bccd_dir), {}, cache_dir)  # BCCD here has no test.txt
    assert TRAINER.prepare_test_data(bccd_dataset(bccd_dir), None, {}, cache_dir) is None
    resolved = TRAINER.resolve({"imgsz": 64, "batch": 4, "data": str(data.path)})
    with pytest.raises(UsageError, match=f"dataset {bccd_dir} .* has no test split; it has: train, val"):
        TRAINER.evaluate(tmp_path / "unused.pt", data, "test", resolved, TrialContext(workdir=tmp_path))
