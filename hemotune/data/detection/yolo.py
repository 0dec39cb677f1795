"""Ultralytics YOLO detection sets: find the layout ``data.yaml`` names, then read and validate it.

A YOLO set is a ``data.yaml`` (``path``, ``train``, ``val``, ``names``) whose
split entries are image folders or list files; each image's labels are found
by Ultralytics' rule (``label_path``). ``read_yolo`` reports every problem in
the ``DataReport`` as ``read_voc`` does, with the same checks
(``hemotune.data.detection.checks``): an image without a label file is kept as
an image without objects (the YOLO convention), a polygon label becomes its
bounding box, a malformed line or an out-of-range class index is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hemotune.data.detection.checks import IMAGE_SUFFIXES, check_image, relative_name, repair_boxes
from hemotune.data.detection.model import (
    ClassNames,
    DetectionSet,
    LabeledImage,
    RawBox,
    finished_set,
    normalise_name,
)
from hemotune.data.report import DataReport
from hemotune.errors import DataError

DATA_YAML = "data.yaml"


@dataclass(frozen=True)
class YoloLayout:
    """Where the files of a YOLO set are, before anything is decoded."""

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    #: split -> image files (sorted), for the splits data.yaml names.
    images: dict[str, list[Path]]
    #: split -> image folders data.yaml names (list files name no folder).
    image_dirs: dict[str, list[Path]]

    def label_dirs(self, split: str) -> list[Path]:
        """The label folders of ``split``'s image folders (scanned for labels without image)."""
        return [label_path(d / "x.jpg").parent for d in self.image_dirs.get(split, [])]


def find_data_yaml(path: Path) -> Path:
    """``path`` itself when it is a YAML file, else ``data.yaml`` (or the only ``*.yaml``) in it."""
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return path
    if (path / DATA_YAML).is_file():
        return path / DATA_YAML
    candidates = sorted(p for p in path.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(f"{path}: no data.yaml found (a YOLO set needs one with train, val and names)")


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` becomes ``/labels/`` and the suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def yolo_layout(path: Path, *, require_train: bool = True) -> YoloLayout:
    """Read ``data.yaml`` and list the images of each split (raises ``DataError`` when it is unusable).

    The splits are ``train``, ``val`` and ``test``, those data.yaml names; a test set
    read on its own (``require_train=False``) may name no ``train``.
    """
    yaml_path = find_data_yaml(path)
    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{yaml_path}: cannot read: {exc}") from None
    if not isinstance(cfg, Mapping):
        raise DataError(f"{yaml_path}: must hold a mapping with train, val and names")
    root = Path(str(cfg.get("path") or yaml_path.parent)).expanduser()
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()
    names = _class_names(cfg.get("names"), yaml_path)
    if require_train and "train" not in cfg:
        raise DataError(f"{yaml_path}: has no train entry")
    images: dict[str, list[Path]] = {}
    image_dirs: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        if not cfg.get(split):
            continue
        entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
        files: list[Path] = []
        for entry in entries:
            files += _entry_images(entry, split, root, yaml_path, image_dirs)
        images[split] = sorted(set(files))
    return YoloLayout(yaml_path=yaml_path, root=root, names=names, images=images, image_dirs=image_dirs)


def _class_names(raw_names: Any, yaml_path: Path) -> tuple[str, ...]:
    """``names`` of data.yaml as a tuple in index order (a list, or a mapping of index -> name)."""
    if isinstance(raw_names, Mapping):
        try:
            return tuple(str(raw_names[k]) for k in sorted(raw_names, key=int))
        except (TypeError, ValueError):
            raise DataError(f"{yaml_path}: names must map 0..n-1 to class names") from None
    if isinstance(raw_names, list):
        return tuple(str(n) for n in raw_names)
    raise DataError(f"{yaml_path}: names must be a list or a mapping of index -> name")


def _entry_images(
    entry: Any, split: str, root: Path, yaml_path: Path, image_dirs: dict[str, list[Path]]
) -> list[Path]:
    """The images one split entry names: a folder (searched, and added to ``image_dirs``) or a list file."""
    path = Path(str(entry)).expanduser()
    path = path if path.is_absolute() else root / path
    if path.is_dir():
        image_dirs.setdefault(split, []).append(path)
        return [f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if path.is_file():
        files = []
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                listed = Path(line.strip())
                files.append(listed if listed.is_absolute() else (path.parent / listed).resolve())
        return files
    raise DataError(f"{yaml_path}: {split} entry {entry} does not exist (looked for {path})")


def yolo_source_files(layout: YoloLayout) -> list[Path]:
    """The files a YOLO set's content depends on: data.yaml, images, every label file in its label folders."""
    files = {layout.yaml_path}
    for split_images in layout.images.values():
        files.update(p for p in split_images if p.is_file())
        files.update(lp for p in split_images if (lp := label_path(p)).is_file())
    for split in layout.image_dirs:
        for d in layout.label_dirs(split):
            if d.is_dir():
                files.update(p for p in d.rglob("*.txt") if p.is_file())
    return sorted(files)


def read_yolo(
    path: Path, classes: Sequence[str] | None = None, *, require_train: bool = True
) -> DetectionSet:
    """Read, validate and repair the YOLO set at ``path`` (a folder with data.yaml, or the YAML file).

    Without ``classes`` the class order is the one of ``names`` in data.yaml; with
    them, label ids are mapped by class name (a set may order its names otherwise).
    An image without a label file is kept as an image without objects (the YOLO
    convention), and reported. A ``test`` entry gives the ``test`` split.
    """
    layout = yolo_layout(Path(path), require_train=require_train)
    report = DataReport(source=str(layout.yaml_path))
    names = ClassNames(classes if classes is not None else [normalise_name(n) or n for n in layout.names])
    images: dict[str, LabeledImage] = {}
    splits: dict[str, list[str]] = {}
    for split, files in layout.images.items():
        ids = splits.setdefault(split, [])
        for image_path in files:
            image_id = _image_id(image_path, split, layout, images)
            image = _labeled_image(layout, image_id, image_path, names, report)
            if image is not None:
                images[image_id] = image
                ids.append(image_id)
    _report_orphan_labels(layout, report)
    have = [s for s in ("train", "val") if s in splits]
    split_source = {2: "data.yaml train and val", 1: f"data.yaml {have[0]} only (val split by seed)"}.get(
        len(have), "data.yaml without train or val"
    )
    if have == ["train"]:
        splits = {"trainval": splits["train"], **({"test": splits["test"]} if "test" in splits else {})}
    if "test" in splits:
        split_source += "; test: data.yaml test"
    return finished_set(
        layout.yaml_path,
        "yolo",
        names.classes,
        images,
        (splits, split_source),
        report,
        {"image files": sum(len(f) for f in layout.images.values())},
    )


def _labeled_image(
    layout: YoloLayout, image_id: str, image_path: Path, names: ClassNames, report: DataReport
) -> LabeledImage | None:
    """One image with the repaired boxes of its label file, or ``None`` when it cannot be decoded."""
    root = layout.root
    where = relative_name(image_path, root)
    check = check_image(image_path) if image_path.is_file() else None
    if check is None or check.error:
        detail = check.error if check else "file does not exist"
        report.add(where, "corrupt or unreadable image", "dropped", f"left out with its labels: {detail}")
        return None
    if check.needs_reencode:
        report.add(where, "JPEG not ending with its end marker", "repaired", "re-encoded when converted")
    labels = label_path(image_path)
    raw_boxes: list[RawBox] = []
    if not labels.is_file():
        report.add(where, "image without label file", "kept", "used as an image without objects")
    else:
        raw_boxes = _read_label_file(labels, root, layout.names, check.width, check.height, report)
    boxes = repair_boxes(relative_name(labels, root), raw_boxes, check.width, check.height, names, report)
    return LabeledImage(
        image_id, image_path, check.width, check.height, boxes, needs_reencode=check.needs_reencode
    )


def _report_orphan_labels(layout: YoloLayout, report: DataReport) -> None:
    """Report the label files in the split label folders that belong to no listed image."""
    used = {label_path(p) for files in layout.images.values() for p in files}
    for split in layout.image_dirs:
        for d in layout.label_dirs(split):
            for labels in sorted(d.rglob("*.txt")) if d.is_dir() else []:
                if labels not in used:
                    report.add(
                        relative_name(labels, layout.root),
                        "label file without image",
                        "dropped",
                        f"in the {split} label folder",
                    )


def _image_id(image_path: Path, split: str, layout: YoloLayout, taken: Mapping[str, LabeledImage]) -> str:
    """A unique id: the path below the split's image folder, no suffix (prefixed by the split if taken)."""
    image_id = image_path.stem
    for image_dir in layout.image_dirs.get(split, []):
        if image_path.is_relative_to(image_dir):
            image_id = image_path.relative_to(image_dir).with_suffix("").as_posix()
            break
    return f"{split}/{image_id}" if image_id in taken else image_id


def _parse_label_line(fields: list[str]) -> tuple[int, float, float, float, float, bool]:
    """``(class, xc, yc, w, h, was_polygon)`` of one label line; raises ``ValueError`` when malformed."""
    values = [float(f) for f in fields]
    if len(values) < 5 or (len(values) > 5 and (len(values) - 1) % 2):
        raise ValueError(f"expected 5 values (or a class and polygon points), got {len(values)}")
    cls = values[0]
    if cls != int(cls):
        raise ValueError(f"class index {fields[0]!r} is not an integer")
    if len(values) == 5:
        return int(cls), values[1], values[2], values[3], values[4], False
    xs, ys = values[1::2], values[2::2]
    x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
    return int(cls), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, True


def _read_label_file(
    labels: Path, root: Path, names: Sequence[str], width: int, height: int, report: DataReport
) -> list[RawBox]:
    """The boxes of one label file in pixel corners, with malformed lines reported and dropped."""
    where = relative_name(labels, root)
    try:
        lines = labels.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        report.add(where, "unreadable label file", "dropped", f"image kept without objects: {exc}")
        return []
    boxes: list[RawBox] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            cls, xc, yc, w, h, polygon = _parse_label_line(line.split())
        except ValueError as exc:
            report.add(f"{where}:{n}", "malformed label line", "dropped", f"{line.strip()!r}: {exc}")
            continue
        if not 0 <= cls < len(names):
            report.add(
                f"{where}:{n}", "class index out of range", "dropped", f"{cls} with {len(names)} names"
            )
            continue
        if polygon:
            report.add(f"{where}:{n}", "polygon label", "repaired", "converted to its bounding box")
        boxes.append(
            (
                names[cls],
                (xc - w / 2) * width,
                (yc - h / 2) * height,
                (xc + w / 2) * width,
                (yc + h / 2) * height,
            )
        )
    return boxes
