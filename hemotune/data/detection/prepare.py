"""Convert any detection set once into the cache: what the detection trainer's ``prepare_data`` calls.

``prepare_detection_data`` fingerprints the source (sha256 over the source
files' contents, the conversion options and ``CONVERTER_VERSION``) and builds
``<cache_dir>/detection/<fingerprint>/`` once per machine with
``hemotune.data.cache.build_once``::

    data.yaml                 path: <absolute final folder>, train: images/train, val: images/val,
                              test: images/test (when the source declares a test split), names
    images/{train,val,test}/  hard links to the source images (copies across file systems;
                              JPEGs not ending with their end marker are re-encoded)
    labels/{train,val,test}/  one "class x_center y_center width height" line per box (normalised)
    splits.json               the image ids of each split and how they were chosen
    dataset.json              fingerprint, options, classes and counts
    data_report.{json,md}     every problem found and what was done about it

The same call on any node gives the same fingerprint and the same content (see
``hemotune.data.detection.write`` for how splits and subsets are chosen).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemotune.data.cache import build_once, entry_dir
from hemotune.data.detection.model import DetectionSet
from hemotune.data.detection.voc import is_voc, read_voc, voc_source_files
from hemotune.data.detection.write import (
    DEFAULT_VAL_FRACTION,
    independent_test_split,
    select_splits,
    write_yolo,
)
from hemotune.data.detection.yolo import find_data_yaml, read_yolo, yolo_layout, yolo_source_files
from hemotune.data.fingerprint import fingerprint_files
from hemotune.data.prepared import PreparedData
from hemotune.data.report import DataReport
from hemotune.errors import DataError

#: Bump when the converted output for the same input would change.
#: 2: a test split the source declares (VOC test.txt, data.yaml test) is converted as images/test.
CONVERTER_VERSION = "2"
CACHE_KIND = "detection"


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


def _source(path: Path, data_format: str, test_only: bool = False) -> tuple[str, list[Path]]:
    """The format of the set at ``path`` (``auto`` detects it) and the files its content depends on."""
    fmt = detect_format(path) if data_format == "auto" else data_format
    if fmt == "voc":
        if not is_voc(path):
            raise DataError(f"{path}: not a Pascal VOC folder (expected JPEGImages/ and Annotations/)")
        return fmt, voc_source_files(path)
    if fmt == "yolo":
        return fmt, yolo_source_files(yolo_layout(path, require_train=not test_only))
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
    test_only: bool = False,
) -> PreparedData:
    """Validate and convert a VOC or YOLO set to a YOLO set in the content-hash cache, once.

    ``test_only``: the set is an independent test set; its declared test split
    (VOC ``test.txt``, data.yaml ``test``), else all its usable images, become
    ``images/test`` (see ``write.independent_test_split``).
    """
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise DataError(f"dataset path does not exist: {source}")
    fmt, files = _source(source, data_format, test_only)
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
        "test_only": test_only,
    }
    base = Path(os.path.commonpath([str(f.parent) for f in files]))
    fingerprint = fingerprint_files(base, files, extra=options)
    target = entry_dir(Path(cache_dir), CACHE_KIND, fingerprint)
    build_once(target, _Conversion(source, options, fingerprint, target).build)
    manifest = json.loads((target / "dataset.json").read_text())
    return PreparedData(
        path=target,
        fingerprint=fingerprint,
        source=str(source),
        summary={**manifest["summary"], "issues": manifest["issues"]},
        report_path=target / "data_report.json",
    )


@dataclass(frozen=True)
class _Conversion:
    """One conversion of ``source`` with ``options`` into the cache entry ``target``."""

    source: Path
    options: Mapping[str, Any]
    fingerprint: str
    target: Path

    def build(self, tmp: Path) -> None:
        """Read, split and write the set into ``tmp`` with its report, split record and manifest."""
        options = self.options
        classes = options["classes"]
        test_only = bool(options.get("test_only"))
        if options["format"] == "voc":
            dataset = read_voc(self.source, classes)
        else:
            dataset = read_yolo(self.source, classes, require_train=not test_only)
        splits, selection = (
            independent_test_split(dataset)
            if test_only
            else select_splits(
                dataset,
                val_fraction=options["val_fraction"],
                selection_seed=options["selection_seed"],
                max_train_images=options["max_train_images"],
                max_val_images=options["max_val_images"],
            )
        )
        placed = write_yolo(dataset, splits, tmp, self.target)
        summary = summarise(dataset, splits, selection, placed)
        dataset.report.counts.update(summary)
        _report_missing_classes(dataset, splits)
        dataset.report.write(tmp)
        (tmp / "splits.json").write_text(json.dumps({**splits, "selection": selection}, indent=2))
        manifest = {
            "fingerprint": self.fingerprint,
            "source": str(self.source),
            "options": dict(options),
            "classes": list(dataset.classes),
            "summary": summary,
            "issues": dataset.report.summary(),
        }
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2))


def summarise(
    dataset: DetectionSet,
    splits: Mapping[str, Sequence[str]],
    selection: Mapping[str, Any],
    placed: Mapping[str, int],
) -> dict[str, Any]:
    """The counts of a converted set: classes, how splits were chosen, images and boxes per split."""
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
    """Report each class with no box in train (cannot be learned), val or test (no AP metric there)."""
    for split in (s for s in ("train", "val", "test") if s in splits):
        for cls, n in dataset.box_counts(splits[split]).items():
            if n == 0:
                detail = (
                    f"its {split}/AP50 metric is not reported" if split != "train" else "it cannot be learned"
                )
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
