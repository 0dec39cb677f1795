"""``yolo_detection`` evaluation through Ultralytics' validator: val reproduces the logged best epoch,
an independent YOLO test set in another class order is remapped, a class it lacks is reported.

The run is tiny (12 BCCD train images, 64 px, 2 epochs from scratch: every mAP is 0 at this scale),
so the agreement is checked on names, classes and values; the agreement on a run that learned
(mAP50-95 0.18) is measured in docs/evaluation.md.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hemotune.data.detection import read_voc, write_yolo
from hemotune.errors import UsageError
from hemotune.evidence import SeedResult, analyse_evaluation
from hemotune.trainers import TrialContext
from hemotune.trainers.yolo_detection import YoloDetectionTrainer
from hemotune.tuning.evaluate_trial import image_scores

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


@pytest.mark.slow
def test_the_saved_per_image_statistics_recompute_the_validators_map_and_feed_the_bootstrap(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """Over all images, ``objective_on_subset`` (Ultralytics' ``ap_per_class`` on the saved per-image
    tp/conf/pred_cls/target_cls) gives the validator's own mAP50-95, mAP50, P, R and AP50; the
    statistics of ``hemotune evaluate`` built from them hold a paired bootstrap with a finite CI.

    At this tiny scale every AP is 0, so the per-image association is checked on the labels too:
    each image's targets are exactly the boxes of its label file, class by class.
    """
    details = TRAINER.evaluate_details(
        trained["weights"], trained["data"], "val", trained["resolved"], TrialContext(workdir=tmp_path)
    )
    with np.load(details["per_image_file"], allow_pickle=False) as saved:
        stats = {k: saved[k] for k in saved.files}
    n = len(stats["images"])
    assert n == details["images"] == 6 and len(set(stats["images"].tolist())) == n
    assert stats["tp"].shape == (len(stats["conf"]), 10) and len(stats["conf"]) > 0
    for i, name in enumerate(stats["images"]):
        labels = Path(trained["data"].path) / Path(str(name).replace("images", "labels", 1)).with_suffix(
            ".txt"
        )
        boxes = sorted(int(line.split()[0]) for line in labels.read_text().splitlines() if line.strip())
        assert sorted(stats["target_cls"][stats["target_image"] == i].astype(int).tolist()) == boxes, name
    everything = np.arange(n)
    for key in ("val/mAP50-95", "val/mAP50", "val/precision", "val/recall", "val/AP50/WBC"):
        value = TRAINER.objective_on_subset(stats, key, everything)
        print(f"{key}: validator {details['metrics'][key]!r}, recomputed {value!r}")
        assert value == pytest.approx(details["metrics"][key], abs=1e-6), key
    # the same set twice doubles every count: the same mAP
    twice = TRAINER.objective_on_subset(stats, "val/mAP50", np.concatenate([everything, everything]))
    assert twice == pytest.approx(details["metrics"]["val/mAP50"], abs=1e-6)

    scores = image_scores(TRAINER, stats, "val/mAP50-95")
    assert scores is not None and list(scores.images) == stats["images"].tolist()
    results = [
        SeedResult(arm, 0, {"val/mAP50-95": details["metrics"]["val/mAP50-95"]}, scores) for arm in "ab"
    ]
    started = time.perf_counter()
    doc = analyse_evaluation(results, {"a": {}, "b": {}}, baseline="a", objective="val/mAP50-95", mode="max")
    print(f"paired image bootstrap, {n} images: {time.perf_counter() - started:.1f} s")
    images = doc["comparisons"]["b"]["bootstrap_images"]
    assert images["available"] and images["images"] == n and images["statistic"] == "val/mAP50-95"
    assert math.isfinite(images["low"]) and math.isfinite(images["high"])
    assert images["low"] <= images["mean"] <= images["high"]
