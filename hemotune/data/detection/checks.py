"""The checks both detection readers run: decode each image, list a folder, repair each box.

Every change is reported in the ``DataReport`` (never a silent drop): a box
with non-finite coordinates, an unknown class, zero size or nothing inside the
image is dropped; an odd class spelling is renamed; a box crossing the border
is clipped; near-duplicate boxes are reported and kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hemotune.data.detection.model import Box, ClassNames, RawBox
from hemotune.data.images import pil_open
from hemotune.data.report import DataReport

#: Image suffixes read (those Ultralytics trains on), compared lower-case.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
#: Same-class boxes overlapping more than this are reported as near-duplicates (and kept).
NEAR_DUPLICATE_IOU = 0.8
#: Boxes crossing the border by less than this fraction of the image size (rounding of normalised
#: YOLO coordinates) are clipped without a report; anything more is reported.
CLIP_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ImageCheck:
    """The outcome of decoding one image: its real size, or why it cannot be used."""

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


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX form) for reports; the full path if it is elsewhere."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def repair_boxes(
    where: str,
    raw_boxes: Iterable[RawBox],
    width: int,
    height: int,
    names: ClassNames,
    report: DataReport,
) -> tuple[Box, ...]:
    """Validate one image's boxes (``(name, xmin, ymin, xmax, ymax)`` in pixels), reporting every change."""
    kept = [
        box
        for raw_box in raw_boxes
        if (box := _repair_box(where, raw_box, width, height, names, report)) is not None
    ]
    _report_near_duplicates(where, kept, report)
    return tuple(kept)


def _repair_box(
    where: str, raw_box: RawBox, width: int, height: int, names: ClassNames, report: DataReport
) -> Box | None:
    """One box renamed and clipped to the image, or ``None`` when it is dropped (reported)."""
    raw_name, x1, y1, x2, y2 = raw_box
    raw = Box(raw_name, x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        report.add(where, "non-finite box coordinates", "dropped", raw.describe())
        return None
    label = names.canonical(raw_name)
    if label is None:
        known = ", ".join(names.classes)
        report.add(where, f"unknown class {raw_name!r}", "dropped", f"{raw.describe()}; classes: {known}")
        return None
    if label != raw_name:
        report.add(where, "class name spelling", "renamed", f"{raw_name!r} -> {label!r}")
    if x2 <= x1 or y2 <= y1:
        report.add(where, "zero-size or inverted box", "dropped", raw.describe())
        return None
    box = Box(label, max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if box.width <= 0 or box.height <= 0:
        report.add(where, "box outside the image", "dropped", f"{raw.describe()} in {width}x{height}")
        return None
    overshoot = max(-x1, -y1, x2 - width, y2 - height, 0.0)
    if overshoot > CLIP_TOLERANCE * max(width, height):
        report.add(where, "box outside the image", "clipped", f"{raw.describe()} -> {box.describe()}")
    return box


def _report_near_duplicates(where: str, boxes: Sequence[Box], report: DataReport) -> None:
    """Report same-class pairs overlapping more than ``NEAR_DUPLICATE_IOU`` (both are kept)."""
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if a.label == b.label and (iou := a.iou(b)) > NEAR_DUPLICATE_IOU:
                report.add(
                    where, "near-duplicate boxes", "kept", f"{a.describe()} ~ {b.describe()} IoU {iou:.2f}"
                )
