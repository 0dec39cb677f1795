"""Pascal VOC detection sets (the BCCD layout), read, validated and repaired.

The layout::

    ROOT/JPEGImages/<id>.jpg          the images (any Ultralytics image suffix)
    ROOT/Annotations/<id>.xml         one <object> per box: <name>, <bndbox> in pixel corners
    ROOT/ImageSets/Main/{train,val,trainval}.txt   optional split lists of ids

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

Coordinates are read as pixel corners in ``[0, width] x [0, height]`` (no 1-based
shift: one pixel is below the annotation noise of cell boxes).

The class order is the ``classes`` option when given (BCCD's space files use
``[RBC, WBC, Platelets]``), else the sorted set of canonical names found. The
data model here (``Box``, ``LabeledImage``, ``DetectionSet``) and the box repair
are shared with the YOLO reader in ``hemotune.data.yolo``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hemotune.data.images import pil_open
from hemotune.data.report import DataReport
from hemotune.errors import DataError

#: Image suffixes read (those Ultralytics trains on), compared lower-case.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
#: Same-class boxes overlapping more than this are reported as near-duplicates (and kept).
NEAR_DUPLICATE_IOU = 0.8
#: Boxes crossing the border by less than this fraction of the image size (rounding of normalised
#: YOLO coordinates) are clipped without a report; anything more is reported.
CLIP_TOLERANCE = 1e-4
#: Split names a converted dataset has.
SPLITS = ("train", "val")


# ----------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Box:
    """One labelled box in pixel corners."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def iou(self, other: Box) -> float:
        iw = min(self.xmax, other.xmax) - max(self.xmin, other.xmin)
        ih = min(self.ymax, other.ymax) - max(self.ymin, other.ymin)
        inter = max(iw, 0.0) * max(ih, 0.0)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def describe(self) -> str:
        return f"{self.label} [{self.xmin:g}, {self.ymin:g}, {self.xmax:g}, {self.ymax:g}]"


@dataclass(frozen=True)
class LabeledImage:
    """One usable image, its real size and its repaired boxes."""

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: tuple[Box, ...]
    #: The file needs re-encoding before Ultralytics reads it (a JPEG with bytes after its end
    #: marker: Ultralytics would rewrite it in place, inside the shared cache).
    needs_reencode: bool = False


@dataclass
class DetectionSet:
    """A validated detection dataset, whatever its source format."""

    source: Path
    format: str
    classes: tuple[str, ...]
    images: dict[str, LabeledImage]
    #: Split lists found in the source (``train``/``val`` -> ids); empty when it has none.
    splits: dict[str, list[str]] = field(default_factory=dict)
    #: Where ``splits`` came from, or why there are none.
    split_source: str = ""
    report: DataReport = field(default_factory=lambda: DataReport(source=""))

    def box_counts(self, ids: Iterable[str] | None = None) -> dict[str, int]:
        """Boxes per class (in class order) over ``ids`` (all images by default)."""
        counter: Counter[str] = Counter()
        for image_id in self.images if ids is None else ids:
            counter.update(b.label for b in self.images[image_id].boxes)
        return {c: counter.get(c, 0) for c in self.classes}


# ----------------------------------------------------------------------------- class names


def normalise_name(name: str) -> str:
    """``name`` with surrounding whitespace removed and inner runs of whitespace made one space."""
    return re.sub(r"\s+", " ", name).strip()


def name_key(name: str) -> str:
    """What class names are matched on: case and all whitespace ignored (``"Plate lets"`` ~ ``"platelets"``)."""
    return "".join(name.split()).casefold()


class ClassNames:
    """Maps raw class names to the canonical class list.

    Matching ignores case and whitespace (``" rbc"`` -> ``RBC``, ``"Plate lets"`` -> ``Platelets``). Without an explicit
    list, the canonical spelling of each name is the most frequent one found and the
    order is sorted, so the same files always give the same class ids.
    """

    def __init__(self, classes: Sequence[str] | None, found: Iterable[str] = ()) -> None:
        if classes is not None:
            canonical = [normalise_name(c) for c in classes]
            if not canonical or any(not c for c in canonical):
                raise DataError(f"the class list must hold non-empty names, got {list(classes)!r}")
            keys = [name_key(c) for c in canonical]
            if len(set(keys)) != len(keys):
                raise DataError(f"the class list has duplicates (ignoring case): {list(classes)!r}")
            self.classes = tuple(canonical)
        else:
            spellings: dict[str, Counter[str]] = {}
            for raw in found:
                name = normalise_name(raw)
                if name:
                    spellings.setdefault(name_key(name), Counter())[name] += 1
            best = [min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for c in spellings.values()]
            self.classes = tuple(sorted(best))
            if not self.classes:
                raise DataError("no class names found in the annotations")
        self._by_key = {name_key(c): c for c in self.classes}

    def canonical(self, raw: str) -> str | None:
        """The canonical name of ``raw``, or ``None`` if it is not a known class."""
        return self._by_key.get(name_key(raw))


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageCheck:
    width: int = 0
    height: int = 0
    needs_reencode: bool = False
    error: str = ""


def check_image(path: Path) -> ImageCheck:
    """Decode ``path`` fully; its real size, or the reason it cannot be used."""
    from PIL import UnidentifiedImageError

    try:
        with pil_open()(path) as im:
            im.load()
            width, height = im.size
            fmt = im.format
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return ImageCheck(error=f"{type(exc).__name__}: {exc}")
    if width < 1 or height < 1:
        return ImageCheck(error=f"empty image ({width}x{height})")
    needs_reencode = False
    if fmt == "JPEG":
        with path.open("rb") as fh:
            fh.seek(-2, 2)
            needs_reencode = fh.read() != b"\xff\xd9"
    return ImageCheck(width=width, height=height, needs_reencode=needs_reencode)


def list_images(folder: Path) -> dict[str, Path]:
    """Image files directly in ``folder`` by id (file stem), sorted by id."""
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.stem, path)
    return found


# ----------------------------------------------------------------------------- box repair


def repair_boxes(
    where: str,
    raw_boxes: Iterable[tuple[str, float, float, float, float]],
    width: int,
    height: int,
    names: ClassNames,
    report: DataReport,
) -> tuple[Box, ...]:
    """Validate one image's boxes (``(name, xmin, ymin, xmax, ymax)`` in pixels), reporting every change."""
    kept: list[Box] = []
    for raw_name, x1, y1, x2, y2 in raw_boxes:
        raw = Box(raw_name, x1, y1, x2, y2)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            report.add(where, "non-finite box coordinates", "dropped", raw.describe())
            continue
        label = names.canonical(raw_name)
        if label is None:
            known = ", ".join(names.classes)
            report.add(where, f"unknown class {raw_name!r}", "dropped", f"{raw.describe()}; classes: {known}")
            continue
        if label != raw_name:
            report.add(where, "class name spelling", "renamed", f"{raw_name!r} -> {label!r}")
        if x2 <= x1 or y2 <= y1:
            report.add(where, "zero-size or inverted box", "dropped", raw.describe())
            continue
        box = Box(label, max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
        if box.width <= 0 or box.height <= 0:
            report.add(where, "box outside the image", "dropped", f"{raw.describe()} in {width}x{height}")
            continue
        overshoot = max(-x1, -y1, x2 - width, y2 - height, 0.0)
        if overshoot > CLIP_TOLERANCE * max(width, height):
            report.add(where, "box outside the image", "clipped", f"{raw.describe()} -> {box.describe()}")
        kept.append(box)
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            if a.label == b.label and (iou := a.iou(b)) > NEAR_DUPLICATE_IOU:
                report.add(
                    where, "near-duplicate boxes", "kept", f"{a.describe()} ~ {b.describe()} IoU {iou:.2f}"
                )
    return tuple(kept)


# ----------------------------------------------------------------------------- VOC


@dataclass(frozen=True)
class _VocAnnotation:
    """The parts of one XML file hemotune uses."""

    size: tuple[int, int] | None
    boxes: tuple[tuple[str, float, float, float, float], ...]
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
    boxes: list[tuple[str, float, float, float, float]] = []
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
    images = list_images(root / "JPEGImages")
    xmls = {p.stem: p for p in sorted((root / "Annotations").glob("*.xml")) if not p.name.startswith(".")}
    for image_id in sorted(set(images) - set(xmls)):
        report.add(
            relative_name(images[image_id], root), "image without annotation file", "dropped", "left out"
        )
    for image_id in sorted(set(xmls) - set(images)):
        report.add(relative_name(xmls[image_id], root), "annotation without image", "dropped", "left out")

    parsed: dict[str, _VocAnnotation] = {}
    for image_id in sorted(set(images) & set(xmls)):
        try:
            parsed[image_id] = _parse_annotation(xmls[image_id])
        except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
            report.add(
                relative_name(xmls[image_id], root),
                "unreadable annotation",
                "dropped",
                f"image left out: {exc}",
            )
    names = ClassNames(classes, (b[0] for a in parsed.values() for b in a.boxes))

    result: dict[str, LabeledImage] = {}
    for image_id, annotation in parsed.items():
        xml_where = relative_name(xmls[image_id], root)
        image_path = images[image_id]
        check = check_image(image_path)
        if check.error:
            report.add(
                relative_name(image_path, root),
                "corrupt or unreadable image",
                "dropped",
                f"left out with its {len(annotation.boxes)} boxes: {check.error}",
            )
            continue
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
        result[image_id] = LabeledImage(
            image_id, image_path, check.width, check.height, boxes, needs_reencode=check.needs_reencode
        )

    splits, split_source = _read_voc_splits(root, result, report)
    report.counts.update(
        {
            "format": "voc",
            "image files": len(images),
            "annotation files": len(xmls),
            "images usable": len(result),
        }
    )
    return DetectionSet(
        source=root,
        format="voc",
        classes=names.classes,
        images=result,
        splits=splits,
        split_source=split_source,
        report=report,
    )


def _read_voc_splits(
    root: Path, images: Mapping[str, LabeledImage], report: DataReport
) -> tuple[dict[str, list[str]], str]:
    """``ImageSets/Main`` train and val lists restricted to usable images (reported), if both exist."""
    main = root / "ImageSets" / "Main"
    if not all((main / f"{s}.txt").is_file() for s in SPLITS):
        if (main / "trainval.txt").is_file():
            ids = _read_id_list(main / "trainval.txt")
            kept = [i for i in ids if i in images]
            for image_id in ids:
                if image_id not in images:
                    report.add(
                        f"ImageSets/Main/trainval.txt:{image_id}", "listed image not usable", "dropped"
                    )
            for image_id in sorted(set(images) - set(ids)):
                report.add(image_id, "image not in ImageSets/Main/trainval.txt", "dropped", "left out")
            return {"trainval": kept}, "ImageSets/Main/trainval.txt (split by seed)"
        return {}, "no ImageSets/Main/{train,val}.txt (split by seed)"
    splits: dict[str, list[str]] = {}
    seen: set[str] = set()
    for split in SPLITS:
        ids = _read_id_list(main / f"{split}.txt")
        kept = []
        for image_id in ids:
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
    for image_id in sorted(set(images) - seen):
        report.add(
            image_id, "image in no split list", "dropped", "not in ImageSets/Main train.txt or val.txt"
        )
    return splits, "ImageSets/Main/train.txt and val.txt"


def _read_id_list(path: Path) -> list[str]:
    ids: list[str] = []
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        parts = line.split()
        if parts and parts[0] not in ids:
            ids.append(parts[0])
    return ids


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX form) for reports; the full path if it is elsewhere."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
