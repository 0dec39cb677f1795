"""An independent image-classification test set, cached with the training set's classes and decoding.

``prepare_test_folder`` turns a folder given as a test set into a cache entry
that ``load_prepared`` reads like any other, with every image in the ``test``
split and the *training* class list in ``meta.json`` (so labels index the
model's outputs). Which images are the test set:

* ``train/``, ``val/``... and ``test/<class>/``: the folder declares splits, ``test/`` is used;
  declaring splits without a ``test/`` folder is an error;
* ``test/<class>/`` alone, ``all/<class>/`` or ``<class>/``: every image.

Class folders are matched by name to the training classes, through the training
set's ``class_map`` when a folder has a source name (``Early`` -> ``Cancer``); a
class unknown to training is a ``UsageError`` naming it (never dropped quietly:
a test set is evaluated whole). A training class with no test
image is reported (``missing_classes``). Images are decoded exactly as for
training (same ``cache_imgsz``, segmentation settings and ``bad_images`` rule).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hemotune.data.cache import build_once, entry_dir
from hemotune.data.imagefolder.build import _write_arrays, _write_split_csv
from hemotune.data.imagefolder.decode import decode_all
from hemotune.data.imagefolder.options import (
    META_FILE,
    ImageFolderOptions,
    SourceOptions,
    options_from_dataset,
)
from hemotune.data.imagefolder.scan import ImageRecord, hash_records, scan_source, worker_count
from hemotune.data.report import DataReport
from hemotune.errors import UsageError

TEST_CACHE_KIND = "imagefolder-test"
TEST_CACHE_VERSION = "imagefolder-test-1"


@dataclass(frozen=True)
class PreparedTestFolder:
    """A cached test set: its entry, fingerprint, per-class counts and the training classes it lacks."""

    path: Path
    fingerprint: str
    counts: Mapping[str, int]
    missing_classes: tuple[str, ...]
    report_path: Path


def locate_test_images(test_path: str | Path) -> SourceOptions:
    """The folder holding the test images of ``test_path`` (its ``test/`` when it declares splits)."""
    root = Path(test_path).expanduser().resolve()
    if not root.is_dir():
        raise UsageError(f"test set not found: {root} (expected a folder of class folders)")
    subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in subdirs or "val" in subdirs:
        if "test" not in subdirs:
            raise UsageError(f"test set {root} declares splits (train/, val/) but has no test/ folder")
        return SourceOptions(root=root / "test", layout="flat")
    if subdirs == {"test"}:
        return SourceOptions(root=root / "test", layout="flat")
    return SourceOptions(root=root, layout="all" if "all" in subdirs else "flat")


def _matched(
    records: Sequence[ImageRecord], classes: Sequence[str], train: SourceOptions
) -> list[ImageRecord]:
    """Records relabelled with training classes (directly, or through the training class_map)."""
    class_map = dict(train.class_map or {})
    out = []
    for r in records:
        label = r.label if r.label in classes else class_map.get(r.label)
        if label not in classes:
            raise UsageError(
                f"test set class {r.label!r} ({r.path.parent}) is not a class the model was trained on: "
                f"{', '.join(classes)}"
            )
        out.append(replace(r, label=str(label)))
    return out


def _fingerprint(options: ImageFolderOptions, records: Sequence[ImageRecord], classes: Sequence[str]) -> str:
    view = {
        "version": TEST_CACHE_VERSION,
        "classes": list(classes),
        "cache_imgsz": options.cache_imgsz,
        "bad_images": options.bad_images,
        "segmentation": [
            options.segmentation.hue_low,
            options.segmentation.hue_high,
            options.segmentation.sat_min,
        ],
    }
    digest = hashlib.sha256(json.dumps(view, sort_keys=True).encode())
    for r in records:
        digest.update(f"{r.relpath}\0{r.sha256}\0{r.label}\n".encode())
    return digest.hexdigest()


def _build(
    target: Path,
    records: Sequence[ImageRecord],
    options: ImageFolderOptions,
    classes: Sequence[str],
    report: DataReport,
    fp: str,
) -> None:
    """Write the entry: arrays and split.csv (every row ``test``), meta.json with the training classes."""
    records, decoded = decode_all(records, options, report)
    order = sorted(range(len(records)), key=lambda i: (records[i].label, records[i].relpath))
    kept = [records[i] for i in order]
    _write_arrays(target, kept, [decoded[i] for i in order], options.cache_imgsz, report)
    _write_split_csv(target / "split.csv", kept, ["test"] * len(kept))
    counts = Counter(r.label for r in kept)
    test_counts = {c: counts[c] for c in classes if counts[c]}
    missing = [c for c in classes if not counts[c]]
    for label in missing:
        report.add(options.root, f"class {label!r} has no image in the test set", "kept", "not evaluated")
    report.counts.update({"images": len(kept), "splits": {"test": test_counts}, "missing_classes": missing})
    report.write(target)
    meta = {
        "version": TEST_CACHE_VERSION,
        "fingerprint": fp,
        "classes": list(classes),
        "cache_imgsz": options.cache_imgsz,
        "num_images": len(kept),
        "counts": {"test": test_counts},
        "missing_classes": missing,
        "sources": [str(options.root)],
    }
    (target / META_FILE).write_text(json.dumps(meta, indent=2))


def prepare_test_folder(
    dataset: Mapping[str, Any], test_path: str | Path, classes: Sequence[str], cache_dir: Path
) -> PreparedTestFolder:
    """Scan, match, decode (once per content) the independent test set ``test_path``."""
    train_options = options_from_dataset(dataset)
    source = locate_test_images(test_path)
    options = replace(train_options, sources=(source,))
    report = DataReport(source=str(source.root))
    found = scan_source(0, source, report)
    records = _matched(found, classes, train_options.sources[0])
    if not records:
        raise UsageError(f"test set {source.root} has no images of the training classes")
    records = sorted(hash_records(records, worker_count()), key=lambda r: r.relpath)
    fp = _fingerprint(options, records, classes)
    target = entry_dir(Path(cache_dir), TEST_CACHE_KIND, fp)
    build_once(target, lambda tmp: _build(tmp, records, options, classes, report, fp))
    meta = json.loads((target / META_FILE).read_text())
    return PreparedTestFolder(
        path=target,
        fingerprint=fp,
        counts=meta["counts"]["test"],
        missing_classes=tuple(meta["missing_classes"]),
        report_path=target / "data_report.json",
    )
