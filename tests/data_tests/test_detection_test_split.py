"""Detection test splits: VOC ``test.txt`` and data.yaml ``test:`` are converted, independent test sets
are matched to the training classes by name. Real BCCD images, copied or rewritten as YOLO sets in tmp_path.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from hemotune.data.detection import read_voc, write_yolo
from hemotune.errors import UsageError
from hemotune.trainers.yolo_detection import YoloDetectionTrainer

TRAINER = YoloDetectionTrainer()
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def bccd_ids(bccd_dir: Path, n: int) -> list[str]:
    return sorted(p.stem for p in (bccd_dir / "JPEGImages").glob("*.jpg"))[:n]


def voc_copy(bccd_dir: Path, target: Path, lists: dict[str, list[str]]) -> Path:
    """A VOC set of the listed BCCD images with ``ImageSets/Main/<name>.txt`` for each list."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for image_id in sorted({i for ids in lists.values() for i in ids}):
        shutil.copyfile(
            bccd_dir / "JPEGImages" / f"{image_id}.jpg", target / "JPEGImages" / f"{image_id}.jpg"
        )
        shutil.copyfile(
            bccd_dir / "Annotations" / f"{image_id}.xml", target / "Annotations" / f"{image_id}.xml"
        )
    for name, ids in lists.items():
        (target / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return target


def yolo_copy(bccd_dir: Path, target: Path, splits: dict[str, list[str]], classes: tuple[str, ...]) -> Path:
    """BCCD images written as a YOLO set whose ``names`` (and label ids) follow ``classes``."""
    voc = read_voc(bccd_dir, BCCD_CLASSES)
    kept = {
        i: replace(im, boxes=tuple(b for b in im.boxes if b.label in classes)) for i, im in voc.images.items()
    }
    target.mkdir(parents=True)
    write_yolo(replace(voc, classes=classes, images=kept), splits, target, target)
    return target


def label_classes(folder: Path, names: list[str]) -> Counter[str]:
    """Boxes per class name in a YOLO label folder."""
    return Counter(
        names[int(line.split()[0])] for f in folder.glob("*.txt") for line in f.read_text().splitlines()
    )


def test_voc_test_txt_becomes_the_test_split(bccd_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    ids = bccd_ids(bccd_dir, 9)
    root = voc_copy(bccd_dir, tmp_path / "voc", {"train": ids[:4], "val": ids[4:6], "test": ids[6:]})
    dataset = {"path": str(root), "classes": BCCD_CLASSES}
    prepared = TRAINER.prepare_data(dataset, {}, cache_dir)
    cfg = yaml.safe_load((prepared.path / "data.yaml").read_text())
    assert cfg["test"] == "images/test" and cfg["hemotune_splits"] == ["train", "val", "test"]
    assert sorted(p.stem for p in (prepared.path / "images" / "test").iterdir()) == ids[6:]
    assert prepared.summary["test images"] == 3 and "test.txt" in prepared.summary["split source"]
    test = TRAINER.prepare_test_data(dataset, None, {}, cache_dir)
    assert test is not None and test.path == prepared.path
    assert (
        test.summary["test_counts"] == prepared.summary["test boxes"]
        and test.summary["missing_classes"] == []
    )


def test_a_test_txt_beside_trainval_is_held_out_of_the_seeded_split(
    bccd_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    ids = bccd_ids(bccd_dir, 8)
    root = voc_copy(bccd_dir, tmp_path / "voc", {"trainval": ids[:5], "test": ids[5:]})
    prepared = TRAINER.prepare_data({"path": str(root), "val_fraction": 0.4}, {}, cache_dir)
    placed = {
        s: sorted(p.stem for p in (prepared.path / "images" / s).iterdir()) for s in ("train", "val", "test")
    }
    assert placed["test"] == ids[5:] and sorted(placed["train"] + placed["val"]) == ids[:5]


def test_without_a_declared_test_split_there_is_none(bccd_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    ids = bccd_ids(bccd_dir, 6)
    root = voc_copy(bccd_dir, tmp_path / "voc", {"train": ids[:4], "val": ids[4:]})
    assert TRAINER.prepare_test_data({"path": str(root)}, None, {}, cache_dir) is None
    cfg = yaml.safe_load(
        (TRAINER.prepare_data({"path": str(root)}, {}, cache_dir).path / "data.yaml").read_text()
    )
    assert "test" not in cfg


def test_yolo_test_entry_and_an_independent_set_in_another_class_order_get_training_ids(
    bccd_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    ids = bccd_ids(bccd_dir, 10)
    training = yolo_copy(
        bccd_dir,
        tmp_path / "train",
        {"train": ids[:4], "val": ids[4:6], "test": ids[6:8]},
        tuple(BCCD_CLASSES),
    )
    dataset = {"path": str(training), "classes": BCCD_CLASSES}
    declared = TRAINER.prepare_test_data(dataset, None, {}, cache_dir)
    assert declared is not None and declared.summary["test images"] == 2
    # An independent set: other images, names in another order, and no Platelets box at all.
    other = yolo_copy(bccd_dir, tmp_path / "other", {"train": ids[8:]}, ("WBC", "RBC"))
    assert yaml.safe_load((other / "data.yaml").read_text())["names"] == {0: "WBC", 1: "RBC"}
    source_counts = label_classes(other / "labels" / "train", ["WBC", "RBC"])
    test = TRAINER.prepare_test_data(dataset, str(other), {}, cache_dir)
    assert test is not None and test.source == str(other.resolve())
    assert sorted(p.stem for p in (test.path / "images" / "test").iterdir()) == ids[8:]  # every image
    assert label_classes(test.path / "labels" / "test", BCCD_CLASSES) == source_counts  # ids remapped by name
    cfg = yaml.safe_load((test.path / "data.yaml").read_text())
    assert cfg["names"] == dict(enumerate(BCCD_CLASSES)) and cfg["hemotune_splits"] == ["test"]
    assert test.summary["missing_classes"] == ["Platelets"]
    assert test.summary["test_counts"] == {
        "RBC": source_counts["RBC"],
        "WBC": source_counts["WBC"],
        "Platelets": 0,
    }


def test_bad_detection_test_sets_are_usage_errors_naming_them(
    bccd_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    ids = bccd_ids(bccd_dir, 6)
    dataset = {"path": str(voc_copy(bccd_dir, tmp_path / "voc", {"train": ids[:4], "val": ids[4:]}))}
    with pytest.raises(UsageError, match=f"test set not found: {tmp_path / 'nowhere'}"):
        TRAINER.prepare_test_data(dataset, str(tmp_path / "nowhere"), {}, cache_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=str(tmp_path / "empty")):
        TRAINER.prepare_test_data(dataset, str(tmp_path / "empty"), {}, cache_dir)
    stranger = yolo_copy(bccd_dir, tmp_path / "stranger", {"train": ids[:2]}, ("RBC", "WBC"))
    cfg = yaml.safe_load((stranger / "data.yaml").read_text())
    (stranger / "data.yaml").write_text(yaml.safe_dump({**cfg, "names": {0: "RBC", 1: "Neutrophil"}}))
    with pytest.raises(UsageError, match="class 'Neutrophil' is not a class the model was trained on"):
        TRAINER.prepare_test_data(dataset, str(stranger), {}, cache_dir)
