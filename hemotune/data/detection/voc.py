"""Pascal VOC detection sets (the BCCD layout), read, validated and repaired.

The layout::

    ROOT/JPEGImages/<id>.jpg          the images (any Ultralytics image suffix)
    ROOT/Annotations/<id>.xml         one <object> per box: <name>, <bndbox> in pixel corners
    ROOT/ImageSets/Main/{train,val,trainval,test}.txt   optional split lists of ids

``read_voc`` never crashes on one bad file and never drops data silently: every
change becomes an issue in the ``DataReport`` (see ``hemotune.data.report``):

=========================================  ==========================================
problem                                    action
=========================================  ==========================================
zero-size or inverted box                  dropped
box (partly) outside the image             clipped; dropped when nothing is left
class name with odd case or whitespace     renamed to the canonical spelling
class name not in the class list           dropped
image without XML, XML without image       dropped (the pair is left out)
XML size disagreeing with the real image   repaired (the real size is used)
corrupt or unreadable image or XML         dropped (the pair is left out)
JPEG not ending with its end marker        repaired (re-encoded when converted)
near-duplicate boxes (same class, IoU>0.8) kept
=========================================  ==========================================

The class order is the ``classes`` option when given (BCCD's space files use
``[RBC, WBC, Platelets]``), else the sorted set of canonical names found. The
data model and the checks are shared with the YOLO reader
(``hemotune.data.detection.model``, ``hemotune.data.detection.checks``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hemotune.data.detection.checks import check_image, list_images, relative_name, repair_boxes
from hemotune.data.detection.model import SPLITS, ClassNames, DetectionSet, LabeledImage, RawBox, finished_set
from hemotune.data.report import DataReport
from hemotune.errors import DataError


@dataclass(frozen=True)
class _VocAnnotation:
    """The parts of one XML file hemotune uses."""

    size: tuple[int, int] | None
    boxes: tuple[RawBox, ...]
    problems: tuple[str, ...] = ()


def _parse_annotation(path: Path) -> _VocAnnotation:
    """Parse one VOC XML file; raises ``ET.ParseError``/``OSError`` when it cannot be read."""
    root = ET.parse(path).getroot()
    size = None
    try:
        w, h = int(float(root.findtext("size/width", ""))), int(float(root.findtext("size/height", "")))
        size = (w, h) if w > 0 and h > 0 else None
    except ValueError:
        size = None
    boxes: list[RawBox] = []
    problems: list[str] = []
    for i, obj in enumerate(root.iter("object")):
        name = obj.findtext("name")
        box = obj.find("bndbox")
        try:
            if name is None or box is None:
                raise ValueError("missing <name> or <bndbox>")
            coords = [float(box.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as exc:
            problems.append(f"object {i}: {exc}")
            continue
        boxes.append((name, coords[0], coords[1], coords[2], coords[3]))
    return _VocAnnotation(size=size, boxes=tuple(boxes), problems=tuple(problems))


def is_voc(root: Path) -> bool:
    """Whether ``root`` has the two folders every VOC set has."""
    return (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir()


def voc_source_files(root: Path) -> list[Path]:
    """The files a VOC set's content depends on (images, XML files, split lists)."""
    files = [p for p in sorted((root / "JPEGImages").iterdir()) if p.is_file()]
    files += [p for p in sorted((root / "Annotations").iterdir()) if p.is_file()]
    main = root / "ImageSets" / "Main"
    if main.is_dir():
        files += [p for p in sorted(main.iterdir()) if p.is_file() and p.suffix == ".txt"]
    return [p for p in files if not p.name.startswith(".")]


def read_voc(root: Path, classes: Sequence[str] | None = None) -> DetectionSet:
    """Read, validate and repair the VOC set at ``root``; every change is in ``.report``."""
    root = Path(root)
    if not is_voc(root):
        raise DataError(f"{root}: not a Pascal VOC folder (expected JPEGImages/ and Annotations/)")
    report = DataReport(source=str(root))
    images, xmls = _paired_files(root, report)
    parsed = _parse_annotations(root, sorted(set(images) & set(xmls)), xmls, report)
    names = ClassNames(classes, (b[0] for a in parsed.values() for b in a.boxes))
    result: dict[str, LabeledImage] = {}
    for image_id, annotation in parsed.items():
        image = _labeled_image(root, image_id, images[image_id], xmls[image_id], annotation, names, report)
        if image is not None:
            result[image_id] = image
    return finished_set(
        root,
        "voc",
        names.classes,
        result,
        _read_voc_splits(root, result, report),
        report,
        {"image files": len(images), "annotation files": len(xmls)},
    )


def _paired_files(root: Path, report: DataReport) -> tuple[dict[str, Path], dict[str, Path]]:
    """The images and XML files by id; an image or XML file without its partner is reported."""
    images = list_images(root / "JPEGImages")
    xmls = {p.stem: p for p in sorted((root / "Annotations").glob("*.xml")) if not p.name.startswith(".")}
    for image_id in sorted(set(images) - set(xmls)):
        report.add(
            relative_name(images[image_id], root), "image without annotation file", "dropped", "left out"
        )
    for image_id in sorted(set(xmls) - set(images)):
        report.add(relative_name(xmls[image_id], root), "annotation without image", "dropped", "left out")
    return images, xmls


def _parse_annotations(
    root: Path, ids: Sequence[str], xmls: Mapping[str, Path], report: DataReport
) -> dict[str, _VocAnnotation]:
    """The parsed XML file of each id; an unreadable one is reported and its image left out."""
    parsed: dict[str, _VocAnnotation] = {}
    for image_id in ids:
        try:
            parsed[image_id] = _parse_annotation(xmls[image_id])
        except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
            report.add(
                relative_name(xmls[image_id], root),
                "unreadable annotation",
                "dropped",
                f"image left out: {exc}",
            )
    return parsed


def _labeled_image(
    root: Path,
    image_id: str,
    image_path: Path,
    xml_path: Path,
    annotation: _VocAnnotation,
    names: ClassNames,
    report: DataReport,
) -> LabeledImage | None:
    """One image with its repaired boxes, or ``None`` when the image cannot be decoded (reported)."""
    xml_where = relative_name(xml_path, root)
    check = check_image(image_path)
    if check.error:
        report.add(
            relative_name(image_path, root),
            "corrupt or unreadable image",
            "dropped",
            f"left out with its {len(annotation.boxes)} boxes: {check.error}",
        )
        return None
    for problem in annotation.problems:
        report.add(xml_where, "malformed object", "dropped", problem)
    if annotation.size != (check.width, check.height):
        written = f"{annotation.size[0]}x{annotation.size[1]}" if annotation.size else "missing"
        report.add(
            xml_where,
            "annotation size differs from the image",
            "repaired",
            f"XML says {written}, image is {check.width}x{check.height}; the image size is used",
        )
    if check.needs_reencode:
        report.add(
            relative_name(image_path, root),
            "JPEG not ending with its end marker",
            "repaired",
            "re-encoded when converted",
        )
    boxes = repair_boxes(xml_where, annotation.boxes, check.width, check.height, names, report)
    return LabeledImage(
        image_id, image_path, check.width, check.height, boxes, needs_reencode=check.needs_reencode
    )


def _read_voc_splits(
    root: Path, images: Mapping[str, LabeledImage], report: DataReport
) -> tuple[dict[str, list[str]], str]:
    """``ImageSets/Main`` train and val (or trainval) lists, and test, restricted to usable images (reported)."""
    main = root / "ImageSets" / "Main"
    test_listed = _read_id_list(main / "test.txt") if (main / "test.txt").is_file() else []
    splits: dict[str, list[str]]
    if all((main / f"{s}.txt").is_file() for s in SPLITS):
        splits, source = (
            _train_val_lists(main, images, report, set(test_listed)),
            "ImageSets/Main/train.txt and val.txt",
        )
    elif (main / "trainval.txt").is_file():
        splits = _trainval_list(main, images, report, set(test_listed))
        source = "ImageSets/Main/trainval.txt (split by seed)"
    else:
        splits, source = {}, "no ImageSets/Main/{train,val}.txt (split by seed)"
    if test_listed:
        splits["test"] = _test_list(test_listed, images, {i for ids in splits.values() for i in ids}, report)
        source += "; test: ImageSets/Main/test.txt"
    return splits, source


def _test_list(
    listed: Sequence[str], images: Mapping[str, LabeledImage], taken: set[str], report: DataReport
) -> list[str]:
    """The usable ids of ``test.txt`` that no train/val list claims (an image is in one split only)."""
    kept = []
    for image_id in listed:
        where = f"ImageSets/Main/test.txt:{image_id}"
        if image_id not in images:
            report.add(
                where, "listed image not usable", "dropped", "missing, unreadable or without annotation"
            )
        elif image_id in taken:
            report.add(where, "image listed in more than one split", "dropped", "kept in train/val only")
        else:
            kept.append(image_id)
    return kept


def _trainval_list(
    main: Path, images: Mapping[str, LabeledImage], report: DataReport, test: set[str]
) -> dict[str, list[str]]:
    """The usable ids of ``trainval.txt``; listed-but-unusable and unlisted images are reported."""
    ids = _read_id_list(main / "trainval.txt")
    kept = [i for i in ids if i in images]
    for image_id in ids:
        if image_id not in images:
            report.add(f"ImageSets/Main/trainval.txt:{image_id}", "listed image not usable", "dropped")
    for image_id in sorted(set(images) - set(ids) - test):
        report.add(image_id, "image not in ImageSets/Main/trainval.txt", "dropped", "left out")
    return {"trainval": kept}


def _train_val_lists(
    main: Path, images: Mapping[str, LabeledImage], report: DataReport, test: set[str]
) -> dict[str, list[str]]:
    """The usable ids of ``train.txt`` and ``val.txt``, each image in its first split only (reported)."""
    splits: dict[str, list[str]] = {}
    seen: set[str] = set()
    for split in SPLITS:
        kept = []
        for image_id in _read_id_list(main / f"{split}.txt"):
            where = f"ImageSets/Main/{split}.txt:{image_id}"
            if image_id not in images:
                report.add(
                    where, "listed image not usable", "dropped", "missing, unreadable or without annotation"
                )
            elif image_id in seen:
                report.add(
                    where, "image listed in more than one split", "dropped", "kept in the first split only"
                )
            else:
                kept.append(image_id)
                seen.add(image_id)
        splits[split] = kept
    for image_id in sorted(set(images) - seen - test):
        report.add(
            image_id,
            "image in no split list",
            "dropped",
            "not in ImageSets/Main train.txt, val.txt or test.txt",
        )
    return splits


def _read_id_list(path: Path) -> list[str]:
    """The ids of a VOC split list: the first word of each line, each once, in file order."""
    ids: list[str] = []
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        parts = line.split()
        if parts and parts[0] not in ids:
            ids.append(parts[0])
    return ids


def voc_class_names(root: Path) -> list[str]:
    """Every object name in the VOC set's XML files, as written (unreadable files are skipped here)."""
    names: set[str] = set()
    for path in sorted(Path(root, "Annotations").glob("*.xml")):
        try:
            names.update(box[0] for box in _parse_annotation(path).boxes)
        except (ET.ParseError, OSError, UnicodeDecodeError):
            continue  # read_voc reports it when the set is converted
    return sorted(names)
