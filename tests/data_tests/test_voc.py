"""The VOC and YOLO detection data layer: BCCD as published, broken sets built here, the cache.

Real data (``bccd_dir``) for what BCCD really contains; small synthetic sets in
``tmp_path`` for every kind of damage the readers must report and repair.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from hemotune.data.detection import (
    CONVERTER_VERSION,
    Box,
    ClassNames,
    detect_format,
    label_path,
    prepare_detection_data,
    read_report,
    read_voc,
    read_yolo,
)
from hemotune.data.detection import prepare as prepare_module
from hemotune.data.report import DataReport, Issue
from hemotune.errors import DataError

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


# ----------------------------------------------------------------------------- builders


def write_image(
    path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 80, 80)
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG", quality=90)


def write_xml(
    path: Path, objects: list[tuple[str, float, float, float, float]], size: tuple[int, int] | None = (64, 48)
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    size_xml = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    )
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        "</bndbox></object>"
        for n, a, b, c, d in objects
    )
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{size_xml}{objs}</annotation>")


def make_voc(root: Path, items: dict[str, list[tuple[str, float, float, float, float]]]) -> Path:
    for image_id, objects in items.items():
        write_image(root / "JPEGImages" / f"{image_id}.jpg")
        write_xml(root / "Annotations" / f"{image_id}.xml", objects)
    return root


def clean_items(n: int) -> dict[str, list[tuple[str, float, float, float, float]]]:
    return {f"img{i:03d}": [("RBC", 2, 2, 20, 20), ("WBC", 30, 10, 50, 40)] for i in range(n)}


@pytest.fixture
def broken_voc(tmp_path: Path) -> Path:
    """A VOC set with one of each problem the reader must handle."""
    root = make_voc(tmp_path / "voc", clean_items(6))
    write_image(root / "JPEGImages" / "clip.jpg")
    write_xml(root / "Annotations" / "clip.xml", [("RBC", -5, 10, 30, 60), ("WBC", 70, 10, 90, 20)])
    write_image(root / "JPEGImages" / "names.jpg")
    write_xml(
        root / "Annotations" / "names.xml",
        [
            (" rbc ", 1, 1, 10, 10),
            ("Plate lets", 1, 1, 5, 5),
            ("platelets", 20, 20, 30, 30),
            ("Monocyte", 5, 5, 9, 9),
        ],
    )
    write_image(root / "JPEGImages" / "zero.jpg")
    write_xml(
        root / "Annotations" / "zero.xml",
        [("RBC", 10, 10, 10, 10), ("WBC", 30, 30, 20, 40), ("RBC", 1, 1, 9, 9)],
    )
    write_image(root / "JPEGImages" / "noxml.jpg")
    write_xml(root / "Annotations" / "noimage.xml", [("RBC", 1, 1, 9, 9)])
    (root / "JPEGImages" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    write_xml(root / "Annotations" / "corrupt.xml", [("RBC", 1, 1, 9, 9)])
    write_image(root / "JPEGImages" / "size.jpg", size=(80, 60))
    write_xml(root / "Annotations" / "size.xml", [("WBC", 60, 40, 79, 59)], size=(64, 48))
    write_image(root / "JPEGImages" / "badxml.jpg")
    (root / "Annotations" / "badxml.xml").write_text("<annotation><object>")
    write_image(root / "JPEGImages" / "dup.jpg")
    write_xml(
        root / "Annotations" / "dup.xml",
        [("RBC", 10, 10, 30, 30), ("RBC", 11, 11, 31, 31), ("WBC", 10, 10, 30, 30)],
    )
    trailing = root / "JPEGImages" / "noeoi.jpg"  # decodes, but Ultralytics would rewrite it in place
    write_image(trailing)
    trailing.write_bytes(trailing.read_bytes() + b"\x00junk")
    truncated = root / "JPEGImages" / "truncated.jpg"
    write_image(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    write_xml(root / "Annotations" / "truncated.xml", [("RBC", 1, 1, 9, 9)])
    write_xml(root / "Annotations" / "noeoi.xml", [("RBC", 1, 1, 9, 9)])
    return root


def issues(report: DataReport, problem: str) -> list[Issue]:
    return [i for i in report.issues if i.problem == problem]


def _tree_bytes(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- BCCD as published


def test_bccd_is_read_with_its_two_zero_size_boxes_dropped(bccd_dir: Path) -> None:
    ds = read_voc(bccd_dir, BCCD_CLASSES)
    assert ds.classes == ("RBC", "WBC", "Platelets")
    assert len(ds.images) == 292
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 205, "val": 87}
    assert ds.box_counts() == {"RBC": 3348, "WBC": 301, "Platelets": 292}  # 3350 RBC in the XML, 2 zero-size
    zero = issues(ds.report, "zero-size or inverted box")
    assert sorted(i.path for i in zero) == [
        "Annotations/BloodImage_00338.xml",
        "Annotations/BloodImage_00343.xml",
    ]
    assert all(i.action == "dropped" for i in zero)
    dups = issues(ds.report, "near-duplicate boxes")
    assert len(dups) == 7 and all(
        i.action == "kept" for i in dups
    )  # 00284, the 8th, is in the held-out test split
    assert {i.path for i in dups} >= {"Annotations/BloodImage_00013.xml", "Annotations/BloodImage_00403.xml"}
    assert ds.report.summary() == {
        "zero-size or inverted box -> dropped": 2,
        "near-duplicate boxes -> kept": 7,
    }
    assert {(im.width, im.height) for im in ds.images.values()} == {(640, 480)}


def test_bccd_without_a_class_list_uses_the_sorted_names(bccd_dir: Path) -> None:
    assert read_voc(bccd_dir).classes == ("Platelets", "RBC", "WBC")


def test_bccd_converts_once_into_the_cache(bccd_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prepared = prepare_detection_data(bccd_dir, cache, data_format="voc", classes=BCCD_CLASSES)
    assert prepared.path.parent == cache / "detection" and prepared.path.name == prepared.fingerprint
    data = yaml.safe_load((prepared.path / "data.yaml").read_text())
    assert data["path"] == str(prepared.path) and Path(data["path"]).is_absolute()
    assert data["names"] == {0: "RBC", 1: "WBC", 2: "Platelets"}
    assert len(list((prepared.path / "images" / "train").iterdir())) == 205
    assert len(list((prepared.path / "labels" / "val").iterdir())) == 87
    assert prepared.summary["train boxes"] == {"RBC": 2381, "WBC": 214, "Platelets": 209}
    assert prepared.summary["val boxes"] == {"RBC": 967, "WBC": 87, "Platelets": 83}
    assert prepared.summary["split source"] == "ImageSets/Main/train.txt and val.txt"
    report = read_report(prepared)
    assert report.summary() == {"zero-size or inverted box -> dropped": 2, "near-duplicate boxes -> kept": 7}
    assert (prepared.path / "data_report.md").read_text().startswith("# Data report")
    # Every label line is a known class and a normalised box inside the image.
    for label_file in (prepared.path / "labels" / "train").iterdir():
        for line in label_file.read_text().splitlines():
            cls, *xywh = line.split()
            assert int(cls) in (0, 1, 2)
            assert all(0.0 <= float(v) <= 1.0 for v in xywh) and float(xywh[2]) > 0 and float(xywh[3]) > 0
    again = prepare_detection_data(bccd_dir, cache, data_format="auto", classes=BCCD_CLASSES)
    assert again.fingerprint == prepared.fingerprint and again.path == prepared.path
    # Read back as a YOLO set it is clean: rounding of normalised coordinates is not "outside the image".
    reread = read_yolo(prepared.path)
    assert reread.classes == ("RBC", "WBC", "Platelets") and len(reread.images) == 292
    assert reread.report.summary() == {"near-duplicate boxes -> kept": 7}


# ----------------------------------------------------------------------------- broken sets


def test_broken_voc_every_problem_is_reported_and_repaired(broken_voc: Path) -> None:
    ds = read_voc(broken_voc, ["RBC", "WBC", "Platelets"])
    report = ds.report

    assert ds.images["clip"].boxes == (Box("RBC", 0.0, 10.0, 30.0, 48.0),)
    clipped = issues(report, "box outside the image")
    assert [i.action for i in clipped] == ["clipped", "dropped"] and clipped[0].path == "Annotations/clip.xml"

    assert [b.label for b in ds.images["names"].boxes] == ["RBC", "Platelets", "Platelets"]
    renamed = issues(report, "class name spelling")
    assert {i.detail for i in renamed} == {
        "' rbc ' -> 'RBC'",
        "'Plate lets' -> 'Platelets'",
        "'platelets' -> 'Platelets'",
    }
    unknown = issues(report, "unknown class 'Monocyte'")
    assert len(unknown) == 1 and unknown[0].action == "dropped"

    assert ds.images["zero"].boxes == (Box("RBC", 1, 1, 9, 9),)
    assert len(issues(report, "zero-size or inverted box")) == 2

    assert "noxml" not in ds.images and "noimage" not in ds.images
    assert issues(report, "image without annotation file")[0].path == "JPEGImages/noxml.jpg"
    assert issues(report, "annotation without image")[0].path == "Annotations/noimage.xml"

    assert "corrupt" not in ds.images and "truncated" not in ds.images
    corrupt = issues(report, "corrupt or unreadable image")
    assert [i.path for i in corrupt] == ["JPEGImages/corrupt.jpg", "JPEGImages/truncated.jpg"]
    assert all(i.action == "dropped" and "left out with its 1 boxes" in i.detail for i in corrupt)

    assert (ds.images["size"].width, ds.images["size"].height) == (80, 60)
    assert ds.images["size"].boxes == (Box("WBC", 60, 40, 79, 59),)  # inside the real image: not clipped
    size = issues(report, "annotation size differs from the image")
    assert size[0].action == "repaired" and "64x48" in size[0].detail and "80x60" in size[0].detail

    assert "badxml" not in ds.images
    assert issues(report, "unreadable annotation")[0].path == "Annotations/badxml.xml"

    assert len(ds.images["dup"].boxes) == 3
    dup = issues(report, "near-duplicate boxes")
    assert len(dup) == 1 and dup[0].action == "kept" and dup[0].path == "Annotations/dup.xml"

    assert ds.images["noeoi"].needs_reencode
    assert issues(report, "JPEG not ending with its end marker")[0].action == "repaired"
    assert len(ds.images) == 6 + 6  # 6 clean + clip, names, zero, size, dup, noeoi
    assert ds.splits == {} and "split by seed" in ds.split_source


def test_class_names_without_a_list_pick_the_most_frequent_spelling() -> None:
    names = ClassNames(None, ["RBC", "rbc", "RBC", " WBC", "wbc ", "WBC"])
    assert names.classes == ("RBC", "WBC")
    assert names.canonical("  Rbc") == "RBC" and names.canonical("Monocyte") is None
    with pytest.raises(DataError):
        ClassNames(["RBC", "rbc"])


def test_broken_voc_converts_with_a_seeded_split_and_a_full_report(broken_voc: Path, tmp_path: Path) -> None:
    prepared = prepare_detection_data(broken_voc, tmp_path / "cache", classes=["RBC", "WBC", "Platelets"])
    splits = json.loads((prepared.path / "splits.json").read_text())
    assert len(splits["train"]) + len(splits["val"]) == 12
    assert len(splits["val"]) == round(12 * 0.2)
    assert splits["selection"]["seeded split"] == {"val_fraction": 0.2, "selection_seed": 0}
    assert not set(splits["train"]) & set(splits["val"])
    report = read_report(prepared)
    assert report.summary()["unknown class 'Monocyte' -> dropped"] == 1
    assert report.summary()["corrupt or unreadable image -> dropped"] == 2
    md = (prepared.path / "data_report.md").read_text()
    assert "JPEGImages/corrupt.jpg" in md and "Annotations/noimage.xml" in md
    # the JPEG with bytes after its end marker was re-encoded, not linked: Ultralytics never rewrites cache files
    split = "train" if "noeoi" in splits["train"] else "val"
    fixed = prepared.path / "images" / split / "noeoi.jpg"
    assert fixed.read_bytes()[-2:] == b"\xff\xd9"
    assert prepared.summary["images placed"]["re-encoded"] == 1
    # the clipped box, normalised: RBC [0, 10, 30, 48] in 64x48
    split = "train" if "clip" in splits["train"] else "val"
    line = (prepared.path / "labels" / split / "clip.txt").read_text().split()
    assert line[0] == "0" and [round(float(v), 4) for v in line[1:]] == [0.2344, 0.6042, 0.4688, 0.7917]


def test_imagesets_lists_are_used_and_their_problems_reported(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", clean_items(5))
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("img000\nimg001\nimg002\nghost\n")
    (main / "val.txt").write_text("img003\nimg002\n")
    ds = read_voc(root)
    assert ds.splits == {"train": ["img000", "img001", "img002"], "val": ["img003"]}
    assert issues(ds.report, "listed image not usable")[0].path == "ImageSets/Main/train.txt:ghost"
    assert issues(ds.report, "image listed in more than one split")[0].path == "ImageSets/Main/val.txt:img002"
    assert [i.path for i in issues(ds.report, "image in no split list")] == ["img004"]


# ----------------------------------------------------------------------------- fingerprint and cache


def test_fingerprint_is_stable_and_the_cache_is_built_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_voc(tmp_path / "voc", clean_items(10))
    builds = []
    real_read_voc = prepare_module.read_voc

    def counting_read_voc(*args, **kwargs):  # type: ignore[no-untyped-def]
        builds.append(args)
        return real_read_voc(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "read_voc", counting_read_voc)
    first = prepare_detection_data(root, tmp_path / "cache")
    second = prepare_detection_data(root, tmp_path / "cache")
    assert first.fingerprint == second.fingerprint and len(builds) == 1
    # Same bytes elsewhere (another node, another path): same fingerprint, same content.
    copy = make_voc(tmp_path / "elsewhere" / "voc", clean_items(10))
    other = prepare_detection_data(copy, tmp_path / "other-cache")
    assert other.fingerprint == first.fingerprint
    # (data.yaml and the report name the folders, which differ; the data does not)
    for rel in ("splits.json", "labels/train", "labels/val"):
        assert _tree_bytes(other.path / rel) == _tree_bytes(first.path / rel)
    # A changed option or a changed file is another dataset.
    assert prepare_detection_data(root, tmp_path / "cache", selection_seed=1).fingerprint != first.fingerprint
    write_xml(root / "Annotations" / "img000.xml", [("RBC", 2, 2, 21, 20)])
    assert prepare_detection_data(root, tmp_path / "cache").fingerprint != first.fingerprint
    assert len(builds) == 4
    manifest = json.loads((first.path / "dataset.json").read_text())
    assert manifest["options"]["converter_version"] == CONVERTER_VERSION


def test_subsets_are_seeded_and_deterministic(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", clean_items(30))
    a = prepare_detection_data(root, tmp_path / "c1", max_train_images=5, max_val_images=2)
    b = prepare_detection_data(root, tmp_path / "c2", max_train_images=5, max_val_images=2)
    c = prepare_detection_data(root, tmp_path / "c3", max_train_images=5, max_val_images=2, selection_seed=7)
    splits_a = json.loads((a.path / "splits.json").read_text())
    assert splits_a == json.loads((b.path / "splits.json").read_text())
    assert (len(splits_a["train"]), len(splits_a["val"])) == (5, 2)
    assert splits_a["selection"]["train subset"] == "5 of 24 images (selection_seed 0)"
    assert json.loads((c.path / "splits.json").read_text())["train"] != splits_a["train"]


def test_unusable_paths_fail_with_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        prepare_detection_data(tmp_path / "nothing", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        detect_format(tmp_path / "empty")
    root = make_voc(tmp_path / "voc", {"only": [("RBC", 1, 1, 5, 5)]})
    with pytest.raises(DataError, match="no usable images in the"):
        prepare_detection_data(root, tmp_path / "cache")


# ----------------------------------------------------------------------------- YOLO sets


@pytest.fixture
def broken_yolo(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            write_image(root / "images" / split / f"{split}{i}.jpg")
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{split}{i}.txt").write_text(
                "0 0.5 0.5 0.25 0.25\n1 0.2 0.2 0.1 0.1\n"
            )
    (root / "labels" / "train" / "train0.txt").write_text(
        "0 0.5 0.5 0.25 0.25\n"
        "7 0.5 0.5 0.1 0.1\n"  # class index out of range
        "1 0.5 oops 0.1 0.1\n"  # malformed
        "1 0.1 0.1 0.3 0.1 0.3 0.3\n"  # polygon -> its bounding box
        "0 0.95 0.5 0.2 0.2\n"  # crosses the right edge -> clipped
        "1 0.5 0.5 0.0 0.2\n"  # zero width -> dropped
    )
    (root / "labels" / "train" / "train1.txt").unlink()  # image without label file
    (root / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": ".", "train": "images/train", "val": "images/val", "names": {0: "rbc", 1: "WBC"}}
        )
    )
    return root


def test_yolo_sets_are_validated_like_voc(broken_yolo: Path, tmp_path: Path) -> None:
    assert detect_format(broken_yolo) == "yolo"
    assert (
        label_path(broken_yolo / "images" / "train" / "a.jpg") == broken_yolo / "labels" / "train" / "a.txt"
    )
    ds = read_yolo(broken_yolo, classes=["RBC", "WBC"])
    summary = ds.report.summary()
    assert summary["class index out of range -> dropped"] == 1
    assert summary["malformed label line -> dropped"] == 1
    assert summary["polygon label -> repaired"] == 1
    assert summary["box outside the image -> clipped"] == 1
    assert summary["zero-size or inverted box -> dropped"] == 1
    assert summary["image without label file -> kept"] == 1
    assert summary["label file without image -> dropped"] == 1
    assert summary["class name spelling -> renamed"] == 6  # every "rbc" box (class 0)
    boxes = ds.images["train0"].boxes
    assert [b.label for b in boxes] == ["RBC", "WBC", "RBC"]
    assert boxes[2].xmax == 64.0  # clipped at the right edge of the 64 px image
    assert ds.images["train1"].boxes == ()
    assert ds.splits == {"train": ["train0", "train1", "train2", "train3"], "val": ["val0", "val1"]}
    prepared = prepare_detection_data(
        broken_yolo, tmp_path / "cache", data_format="yolo", classes=["RBC", "WBC"]
    )
    assert prepared.summary["train images"] == 4 and prepared.summary["val images"] == 2
    assert prepared.summary["split source"] == "data.yaml train and val"
    assert (prepared.path / "labels" / "train" / "train1.txt").read_text() == ""
    # the converted set reads back clean (only near-duplicates would be reported, and kept)
    reread = read_yolo(prepared.path)
    assert reread.classes == ("RBC", "WBC")
    assert not [i for i in reread.report.issues if i.action != "kept"]


def test_yolo_class_order_comes_from_data_yaml(broken_yolo: Path) -> None:
    assert read_yolo(broken_yolo).classes == ("rbc", "WBC")
