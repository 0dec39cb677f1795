"""Ultralytics YOLO detection sets: read and validate them, and convert any detection set once into the cache.

``prepare_detection_data`` is what the detection trainer's ``prepare_data`` calls.
It fingerprints the source (sha256 over the source files' contents, the
conversion options and ``CONVERTER_VERSION``) and builds
``<cache_dir>/detection/<fingerprint>/`` once per machine with
``hemotune.data.cache.build_once``::

    data.yaml                 path: <absolute final folder>, train: images/train, val: images/val, names
    images/{train,val}/...    hard links to the source images (copies across file systems;
                              JPEGs not ending with their end marker are re-encoded)
    labels/{train,val}/*.txt  one "class x_center y_center width height" line per box (normalised)
    splits.json               the image ids of each split and how they were chosen
    dataset.json              fingerprint, options, classes and counts
    data_report.{json,md}     every problem found and what was done about it

The same call on any node gives the same fingerprint and the same content: splits
and subsets are chosen by hashing ``selection_seed`` with each image id (no
dependence on Python's random module or on file order).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hemotune.data.cache import build_once, entry_dir
from hemotune.data.fingerprint import fingerprint_files
from hemotune.data.images import pil_open
from hemotune.data.report import DataReport
from hemotune.data.voc import (
    IMAGE_SUFFIXES,
    ClassNames,
    DetectionSet,
    LabeledImage,
    check_image,
    is_voc,
    normalise_name,
    read_voc,
    relative_name,
    repair_boxes,
    voc_source_files,
)
from hemotune.errors import DataError
from hemotune.trainers.base import PreparedData

#: Bump when the converted output for the same input would change.
CONVERTER_VERSION = "1"
CACHE_KIND = "detection"
DATA_YAML = "data.yaml"
DEFAULT_VAL_FRACTION = 0.2


# ----------------------------------------------------------------------------- reading YOLO sets


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


def yolo_layout(path: Path) -> YoloLayout:
    """Read ``data.yaml`` and list the images of each split (raises ``DataError`` when it is unusable)."""
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
    raw_names = cfg.get("names")
    if isinstance(raw_names, Mapping):
        try:
            names = tuple(str(raw_names[k]) for k in sorted(raw_names, key=int))
        except (TypeError, ValueError):
            raise DataError(f"{yaml_path}: names must map 0..n-1 to class names") from None
    elif isinstance(raw_names, list):
        names = tuple(str(n) for n in raw_names)
    else:
        raise DataError(f"{yaml_path}: names must be a list or a mapping of index -> name")
    if "train" not in cfg:
        raise DataError(f"{yaml_path}: has no train entry")
    images: dict[str, list[Path]] = {}
    image_dirs: dict[str, list[Path]] = {}
    for split in ("train", "val"):
        if not cfg.get(split):
            continue
        entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
        files: list[Path] = []
        for entry in entries:
            p = Path(str(entry)).expanduser()
            p = p if p.is_absolute() else root / p
            if p.is_dir():
                files += [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
                image_dirs.setdefault(split, []).append(p)
            elif p.is_file():
                for line in p.read_text(encoding="utf-8-sig").splitlines():
                    if line.strip():
                        f = Path(line.strip())
                        files.append(f if f.is_absolute() else (p.parent / f).resolve())
            else:
                raise DataError(f"{yaml_path}: {split} entry {entry} does not exist (looked for {p})")
        images[split] = sorted(set(files))
    return YoloLayout(yaml_path=yaml_path, root=root, names=names, images=images, image_dirs=image_dirs)


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


def read_yolo(path: Path, classes: Sequence[str] | None = None) -> DetectionSet:
    """Read, validate and repair the YOLO set at ``path`` (a folder with data.yaml, or the YAML file).

    Without ``classes`` the class order is the one of ``names`` in data.yaml.
    An image without a label file is kept as an image without objects (the YOLO
    convention), and reported.
    """
    layout = yolo_layout(Path(path))
    root = layout.root
    report = DataReport(source=str(layout.yaml_path))
    names = ClassNames(classes if classes is not None else [normalise_name(n) or n for n in layout.names])
    images: dict[str, LabeledImage] = {}
    splits: dict[str, list[str]] = {}
    used_labels: set[Path] = set()
    for split, files in layout.images.items():
        ids = splits.setdefault(split, [])
        for image_path in files:
            where = relative_name(image_path, root)
            image_id = _image_id(image_path, split, layout, images)
            lp = label_path(image_path)
            used_labels.add(lp)
            check = check_image(image_path) if image_path.is_file() else None
            if check is None or check.error:
                detail = check.error if check else "file does not exist"
                report.add(
                    where, "corrupt or unreadable image", "dropped", f"left out with its labels: {detail}"
                )
                continue
            if check.needs_reencode:
                report.add(
                    where, "JPEG not ending with its end marker", "repaired", "re-encoded when converted"
                )
            raw_boxes = []
            if not lp.is_file():
                report.add(where, "image without label file", "kept", "used as an image without objects")
            else:
                raw_boxes = _read_label_file(lp, root, layout.names, check.width, check.height, report)
            boxes = repair_boxes(relative_name(lp, root), raw_boxes, check.width, check.height, names, report)
            images[image_id] = LabeledImage(
                image_id, image_path, check.width, check.height, boxes, needs_reencode=check.needs_reencode
            )
            ids.append(image_id)
    for split in layout.image_dirs:
        for d in layout.label_dirs(split):
            for lp in sorted(d.rglob("*.txt")) if d.is_dir() else []:
                if lp not in used_labels:
                    report.add(
                        relative_name(lp, root),
                        "label file without image",
                        "dropped",
                        f"in the {split} label folder",
                    )
    report.counts.update({"format": "yolo", "image files": sum(len(f) for f in layout.images.values())})
    report.counts["images usable"] = len(images)
    have = [s for s in ("train", "val") if s in splits]
    split_source = "data.yaml train and val" if len(have) == 2 else "data.yaml train only (val split by seed)"
    if len(have) == 1:
        splits = {"trainval": splits["train"]}
    return DetectionSet(
        source=layout.yaml_path,
        format="yolo",
        classes=names.classes,
        images=images,
        splits=splits,
        split_source=split_source,
        report=report,
    )


def _image_id(image_path: Path, split: str, layout: YoloLayout, taken: Mapping[str, LabeledImage]) -> str:
    """A unique id: the path below the split's image folder, no suffix (prefixed by the split if taken)."""
    image_id = image_path.stem
    for image_dir in layout.image_dirs.get(split, []):
        if image_path.is_relative_to(image_dir):
            image_id = image_path.relative_to(image_dir).with_suffix("").as_posix()
            break
    return f"{split}/{image_id}" if image_id in taken else image_id


def _read_label_file(
    lp: Path, root: Path, names: Sequence[str], width: int, height: int, report: DataReport
) -> list[tuple[str, float, float, float, float]]:
    """The boxes of one label file in pixel corners, with malformed lines reported and dropped."""
    where = relative_name(lp, root)
    boxes = []
    try:
        lines = lp.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        report.add(where, "unreadable label file", "dropped", f"image kept without objects: {exc}")
        return []
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


# ----------------------------------------------------------------------------- splits and subsets


def _ranked(ids: Sequence[str], seed: int, salt: str) -> list[str]:
    """``ids`` in a pseudo-random order that depends only on ``seed``, ``salt`` and the ids."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\0{salt}\0{i}".encode()).hexdigest())


def select_splits(
    dataset: DetectionSet,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    selection_seed: int = 0,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The train and val ids to convert, and a record of how they were chosen.

    The source's own split lists are used when it has both; otherwise a seeded
    split of its images (``val_fraction`` of them, at least one, go to val).
    ``max_*_images`` then keep a seeded subset of each split.
    """
    record: dict[str, Any] = {"split source": dataset.split_source}
    if "train" in dataset.splits and "val" in dataset.splits:
        splits = {"train": list(dataset.splits["train"]), "val": list(dataset.splits["val"])}
    else:
        pool = dataset.splits.get("trainval", sorted(dataset.images))
        if not 0 < val_fraction < 1:
            raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        n_val = max(1, round(len(pool) * val_fraction)) if len(pool) > 1 else 0
        ranked = _ranked(pool, selection_seed, "split")
        splits = {"train": sorted(ranked[n_val:]), "val": sorted(ranked[:n_val])}
        record["seeded split"] = {"val_fraction": val_fraction, "selection_seed": selection_seed}
    for split, limit in (("train", max_train_images), ("val", max_val_images)):
        if limit is not None and len(splits[split]) > limit:
            record[f"{split} subset"] = (
                f"{limit} of {len(splits[split])} images (selection_seed {selection_seed})"
            )
            splits[split] = sorted(_ranked(splits[split], selection_seed, split)[:limit])
    for split in ("train", "val"):
        if not splits[split]:
            raise DataError(f"{dataset.source}: no usable images in the {split} split (see the data report)")
    return splits, record


# ----------------------------------------------------------------------------- writing


def _file_name(image: LabeledImage) -> str:
    return image.image_id.replace("/", "__") + image.image_path.suffix.lower()


def _place_image(image: LabeledImage, dst: Path) -> str:
    """Put the image at ``dst``: a hard link, else a copy; re-encoded when it needs repair."""
    if image.needs_reencode:
        from PIL import ImageOps

        with pil_open()(image.image_path) as im:
            ImageOps.exif_transpose(im).save(dst, "JPEG", subsampling=0, quality=100)
        return "re-encoded"
    try:
        os.link(image.image_path, dst)
        return "linked"
    except OSError:
        shutil.copy2(image.image_path, dst)
        return "copied"


def yolo_label_lines(image: LabeledImage, classes: Sequence[str]) -> list[str]:
    """The label lines of one image: ``class x_center y_center width height``, normalised."""
    index = {c: i for i, c in enumerate(classes)}
    lines = []
    for b in image.boxes:
        xc, yc = (b.xmin + b.xmax) / 2 / image.width, (b.ymin + b.ymax) / 2 / image.height
        w, h = b.width / image.width, b.height / image.height
        lines.append(f"{index[b.label]} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
    return lines


def write_yolo(
    dataset: DetectionSet, splits: Mapping[str, Sequence[str]], out: Path, final_dir: Path
) -> dict[str, int]:
    """Write ``splits`` of ``dataset`` as a YOLO set into ``out``; data.yaml names ``final_dir``."""
    placed: dict[str, int] = {}
    for split, ids in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            image = dataset.images[image_id]
            name = _file_name(image)
            how = _place_image(image, out / "images" / split / name)
            placed[how] = placed.get(how, 0) + 1
            lines = yolo_label_lines(image, dataset.classes)
            (out / "labels" / split / Path(name).with_suffix(".txt")).write_text(
                "".join(f"{x}\n" for x in lines)
            )
    data_yaml = {
        "path": str(final_dir),
        "train": "images/train",
        "val": "images/val",
        "nc": len(dataset.classes),
        "names": dict(enumerate(dataset.classes)),
    }
    (out / DATA_YAML).write_text(yaml.safe_dump(data_yaml, sort_keys=False))
    return placed


# ----------------------------------------------------------------------------- preparing (once, cached)


def detect_format(path: Path) -> str:
    """``voc`` or ``yolo`` for the dataset at ``path``."""
    if path.is_dir() and is_voc(path):
        return "voc"
    try:
        find_data_yaml(path)
        return "yolo"
    except DataError:
        pass
    raise DataError(
        f"{path}: cannot tell the dataset format: expected a Pascal VOC folder "
        "(JPEGImages/ and Annotations/) or a YOLO set (data.yaml)"
    )


def _source(path: Path, data_format: str) -> tuple[str, list[Path]]:
    fmt = detect_format(path) if data_format == "auto" else data_format
    if fmt == "voc":
        if not is_voc(path):
            raise DataError(f"{path}: not a Pascal VOC folder (expected JPEGImages/ and Annotations/)")
        return fmt, voc_source_files(path)
    if fmt == "yolo":
        return fmt, yolo_source_files(yolo_layout(path))
    raise DataError(f"unknown detection dataset format {data_format!r}; use auto, voc or yolo")


def prepare_detection_data(
    path: Path | str,
    cache_dir: Path,
    *,
    data_format: str = "auto",
    classes: Sequence[str] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    selection_seed: int = 0,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
) -> PreparedData:
    """Validate and convert a VOC or YOLO set to a YOLO set in the content-hash cache, once."""
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise DataError(f"dataset path does not exist: {source}")
    fmt, files = _source(source, data_format)
    if not files:
        raise DataError(f"{source}: no dataset files found")
    options: dict[str, Any] = {
        "converter_version": CONVERTER_VERSION,
        "format": fmt,
        "classes": list(classes) if classes is not None else None,
        "val_fraction": val_fraction,
        "selection_seed": selection_seed,
        "max_train_images": max_train_images,
        "max_val_images": max_val_images,
    }
    base = Path(os.path.commonpath([str(f.parent) for f in files]))
    fingerprint = fingerprint_files(base, files, extra=options)
    target = entry_dir(Path(cache_dir), CACHE_KIND, fingerprint)

    def build(tmp: Path) -> None:
        dataset = read_voc(source, classes) if fmt == "voc" else read_yolo(source, classes)
        splits, selection = select_splits(
            dataset,
            val_fraction=val_fraction,
            selection_seed=selection_seed,
            max_train_images=max_train_images,
            max_val_images=max_val_images,
        )
        placed = write_yolo(dataset, splits, tmp, target)
        summary = _summarise(dataset, splits, selection, placed)
        dataset.report.counts.update(summary)
        _report_missing_classes(dataset, splits)
        dataset.report.write(tmp)
        (tmp / "splits.json").write_text(json.dumps({**splits, "selection": selection}, indent=2))
        manifest = {
            "fingerprint": fingerprint,
            "source": str(source),
            "options": options,
            "classes": list(dataset.classes),
            "summary": summary,
            "issues": dataset.report.summary(),
        }
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2))

    build_once(target, build)
    manifest = json.loads((target / "dataset.json").read_text())
    return PreparedData(
        path=target,
        fingerprint=fingerprint,
        source=str(source),
        summary={**manifest["summary"], "issues": manifest["issues"]},
        report_path=target / "data_report.json",
    )


def _summarise(
    dataset: DetectionSet,
    splits: Mapping[str, Sequence[str]],
    selection: Mapping[str, Any],
    placed: Mapping[str, int],
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "classes": list(dataset.classes),
        **selection,
        "boxes usable (all images)": dataset.box_counts(),
    }
    for split, ids in splits.items():
        summary[f"{split} images"] = len(ids)
        summary[f"{split} boxes"] = dataset.box_counts(ids)
        summary[f"{split} images without boxes"] = sum(1 for i in ids if not dataset.images[i].boxes)
    summary["images placed"] = dict(placed)
    return summary


def _report_missing_classes(dataset: DetectionSet, splits: Mapping[str, Sequence[str]]) -> None:
    for split in ("train", "val"):
        for cls, n in dataset.box_counts(splits[split]).items():
            if n == 0:
                detail = "its val/AP50 metric is not reported" if split == "val" else "it cannot be learned"
                dataset.report.add(split, f"class {cls!r} has no boxes in the {split} split", "kept", detail)


def read_report(prepared: PreparedData) -> DataReport:
    """The data report stored with a prepared dataset."""
    if prepared.report_path is None:
        raise DataError(f"{prepared.path}: has no data report")
    raw = json.loads(Path(prepared.report_path).read_text())
    report = DataReport(source=raw["source"], counts=raw["counts"])
    for issue in raw["issues"]:
        report.add(issue["path"], issue["problem"], issue["action"], issue.get("detail", ""))
    return report
