"""The detection data model shared by the VOC and YOLO readers.

``Box``, ``LabeledImage`` and ``DetectionSet`` are what a reader returns,
whatever the source format (``finished_set`` assembles it); ``ClassNames`` maps
raw class names onto the class list. The per-image and per-box checks both
readers run are in ``hemotune.data.detection.checks``.

Coordinates are pixel corners in ``[0, width] x [0, height]`` (no 1-based
shift: one pixel is below the annotation noise of cell boxes).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hemotune.data.report import DataReport
from hemotune.errors import DataError

#: Split names a converted dataset has.
SPLITS = ("train", "val")

#: One raw box as read from a file: ``(class name, xmin, ymin, xmax, ymax)`` in pixels.
RawBox = tuple[str, float, float, float, float]


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
        """Intersection over union with ``other`` (0 when both are empty)."""
        iw = min(self.xmax, other.xmax) - max(self.xmin, other.xmin)
        ih = min(self.ymax, other.ymax) - max(self.ymin, other.ymin)
        inter = max(iw, 0.0) * max(ih, 0.0)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def describe(self) -> str:
        """The box as written in data reports."""
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


def finished_set(
    source: Path,
    data_format: str,
    classes: tuple[str, ...],
    images: dict[str, LabeledImage],
    splits: tuple[dict[str, list[str]], str],
    report: DataReport,
    file_counts: Mapping[str, int],
) -> DetectionSet:
    """What a reader returns: the set, with its format and file counts recorded in the report.

    ``splits`` is ``(split lists, where they came from)``; the report's counts are
    ``format``, then ``file_counts`` in order, then ``images usable``.
    """
    report.counts.update({"format": data_format, **file_counts, "images usable": len(images)})
    split_lists, split_source = splits
    return DetectionSet(
        source=source,
        format=data_format,
        classes=classes,
        images=images,
        splits=split_lists,
        split_source=split_source,
        report=report,
    )


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
        self.classes = _given_classes(classes) if classes is not None else _found_classes(found)
        self._by_key = {name_key(c): c for c in self.classes}

    def canonical(self, raw: str) -> str | None:
        """The canonical name of ``raw``, or ``None`` if it is not a known class."""
        return self._by_key.get(name_key(raw))


def _given_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """An explicit class list, normalised; empty names or duplicates (ignoring case) are errors."""
    canonical = [normalise_name(c) for c in classes]
    if not canonical or any(not c for c in canonical):
        raise DataError(f"the class list must hold non-empty names, got {list(classes)!r}")
    keys = [name_key(c) for c in canonical]
    if len(set(keys)) != len(keys):
        raise DataError(f"the class list has duplicates (ignoring case): {list(classes)!r}")
    return tuple(canonical)


def _found_classes(found: Iterable[str]) -> tuple[str, ...]:
    """The sorted classes of the names found, each spelled as it is most often (ties: the smallest)."""
    spellings: dict[str, Counter[str]] = {}
    for raw in found:
        name = normalise_name(raw)
        if name:
            spellings.setdefault(name_key(name), Counter())[name] += 1
    best = [min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for c in spellings.values()]
    if not best:
        raise DataError("no class names found in the annotations")
    return tuple(sorted(best))
