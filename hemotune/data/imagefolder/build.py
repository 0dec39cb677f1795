"""Building an image-classification cache entry: decode once, split, write arrays and tables.

Preparing runs once on the driver before Ray starts. ``prepare_imagefolder``
scans (``scan.py``), fingerprints (content hashes + options + ``CACHE_VERSION``),
then ``build_once`` decodes and resizes every image once (``decode.py``) into
``<cache>/imagefolder/<fingerprint>/``: ``images.npy`` (N, S, S, 3 uint8),
``masks.npy`` (N, S, S white-cell masks), ``split.csv`` (index, source, path,
md5, class, source_class, split, group), ``meta.json`` and the data report.
Trials memory-map those arrays (``load.py``) and resize them to their own ``imgsz``.

A corrupt or truncated image is dropped and recorded in the data report (fatal
with ``bad_images: error``); a class left with no readable or no training image
is a ``DataError``.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemotune.data.cache import build_once, entry_dir
from hemotune.data.imagefolder.decode import Decoded, decode_all
from hemotune.data.imagefolder.options import (
    CACHE_KIND,
    CACHE_VERSION,
    EXAMPLE_FILE,
    IMAGES_FILE,
    MASKS_FILE,
    META_FILE,
    SPLIT_FILE,
    ImageFolderOptions,
    options_from_dataset,
)
from hemotune.data.imagefolder.scan import ImageRecord, fingerprint, scan
from hemotune.data.images import pil_open
from hemotune.data.report import DataReport
from hemotune.data.splits import SPLITS, SplitItem, grouped_stratified_split, split_counts
from hemotune.data.stain_mask import SegmentationSettings, before_after, white_cell_mask
from hemotune.errors import DataError


def assign_splits(
    records: Sequence[ImageRecord], options: ImageFolderOptions, report: DataReport
) -> list[str]:
    """The split of every record: given folders (duplicates outside train dropped) or computed."""
    if records and records[0].given_split is not None:
        return _given_splits(records, report)
    items = [SplitItem(key=r.md5, label=r.label, groups=(r.group,) if r.group else ()) for r in records]
    return grouped_stratified_split(items, options.fractions, options.split_seed)


def _given_splits(records: Sequence[ImageRecord], report: DataReport) -> list[str]:
    """The given split of each record; a duplicate of an image in an earlier split gets ``""`` (dropped)."""
    rank = {s: i for i, s in enumerate(SPLITS)}
    first: dict[str, ImageRecord] = {}
    for r in sorted(records, key=lambda r: (rank[r.given_split or "train"], r.source, r.relpath)):
        first.setdefault(r.md5, r)
    out = []
    for r in records:
        keeper = first[r.md5]
        if keeper.given_split != r.given_split:
            report.add(
                r.path,
                f"exact duplicate of {keeper.path} ({keeper.given_split})",
                "dropped",
                "an image may not be in two splits",
            )
            out.append("")
        else:
            out.append(r.given_split or "train")
    return out


def _report_label_conflicts(records: Sequence[ImageRecord], report: DataReport) -> None:
    """Report identical images filed under different labels (kept: they share one split)."""
    labels: dict[str, set[str]] = defaultdict(set)
    for r in records:
        labels[r.md5].add(r.label)
    for r in records:
        if len(labels[r.md5]) > 1:
            report.add(
                r.path,
                f"the same image is labelled {sorted(labels[r.md5])}",
                "kept",
                "duplicates share one split",
            )


def _check_class_coverage(
    classes: Sequence[str],
    labels_by_split: Mapping[str, Mapping[str, int]],
    options: ImageFolderOptions,
    report: DataReport,
) -> None:
    """Every class needs a training image; one missing from val or test is reported."""
    train = labels_by_split.get("train", {})
    for label in classes:
        if not train.get(label):
            raise DataError(f"{options.root}: class {label!r} has no training image after splitting")
        for split in ("val", "test"):
            if split in labels_by_split and not labels_by_split[split].get(label):
                report.add(
                    options.root,
                    f"class {label!r} has no image in {split}",
                    "kept",
                    "its per-class metrics on that split are undefined (reported as 0)",
                )


def _write_arrays(
    target: Path, records: Sequence[ImageRecord], decoded: Sequence[Decoded], size: int, report: DataReport
) -> None:
    """``images.npy`` and ``masks.npy`` in record order; an image without a cell mask gets an all-ones one."""
    images = np.lib.format.open_memmap(
        target / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(len(records), size, size, 3)
    )
    masks = np.lib.format.open_memmap(
        target / MASKS_FILE, mode="w+", dtype=np.uint8, shape=(len(records), size, size)
    )
    for row, (record, result) in enumerate(zip(records, decoded, strict=True)):
        images[row] = result.image
        mask = result.mask
        if mask is None or not mask.any():
            report.add(
                record.path,
                "segmentation found no stained cell",
                "kept",
                "with segmentation on, this image is used whole",
            )
            mask = np.ones((size, size), dtype=np.uint8)
        masks[row] = mask
    images.flush()
    masks.flush()
    del images, masks


def build_prepared(
    target: Path, records: Sequence[ImageRecord], options: ImageFolderOptions, report: DataReport, fp: str
) -> None:
    """Write the cache entry (arrays, split.csv, meta.json, report, example) into ``target``."""
    records, decoded = decode_all(records, options, report)
    splits = assign_splits(records, options, report)
    _report_label_conflicts(records, report)
    keep = [i for i, s in enumerate(splits) if s]
    order = sorted(
        keep, key=lambda i: (SPLITS.index(splits[i]), records[i].label, records[i].source, records[i].relpath)
    )
    kept = [records[i] for i in order]
    kept_splits = [splits[i] for i in order]
    classes = sorted({r.label for r in kept})
    labels_by_split = split_counts([r.label for r in kept], kept_splits)
    _check_class_coverage(classes, labels_by_split, options, report)
    _write_arrays(target, kept, [decoded[i] for i in order], options.cache_imgsz, report)
    _write_split_csv(target / SPLIT_FILE, kept, kept_splits)
    groups = _duplicate_groups(kept)
    report.counts.update(
        {
            "images": len(kept),
            "classes": len(classes),
            "splits": labels_by_split,
            "duplicate_groups": len(groups),
            "images_in_duplicate_groups": sum(len(g) for g in groups),
            "patient_groups": len({r.group for r in kept if r.group}),
            "split_seed": options.split_seed,
            "fractions": dict(options.fractions),
            "cache_imgsz": options.cache_imgsz,
        }
    )
    report.write(target)
    meta = {
        "version": CACHE_VERSION,
        "fingerprint": fp,
        "classes": classes,
        "cache_imgsz": options.cache_imgsz,
        "num_images": len(kept),
        "counts": labels_by_split,
        "sources": [str(s.root) for s in options.sources],
    }
    (target / META_FILE).write_text(json.dumps(meta, indent=2))
    _write_example(target / EXAMPLE_FILE, kept, options.segmentation)


def _write_split_csv(path: Path, records: Sequence[ImageRecord], splits: Sequence[str]) -> None:
    """``split.csv``: one row per cached image, its row index in the arrays first."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "source", "path", "md5", "class", "source_class", "split", "group"])
        for i, (r, s) in enumerate(zip(records, splits, strict=True)):
            writer.writerow([i, r.source, r.relpath, r.md5, r.label, r.source_class, s, r.group])


def _duplicate_groups(records: Sequence[ImageRecord]) -> list[list[ImageRecord]]:
    """The sets of records sharing one content hash (exact duplicates)."""
    by_md5: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        by_md5[r.md5].append(r)
    return [g for g in by_md5.values() if len(g) > 1]


def _write_example(path: Path, records: Sequence[ImageRecord], seg: SegmentationSettings) -> None:
    """One before/after segmentation example at full resolution (the first image with a mask)."""
    from PIL import Image

    for record in records[:50]:
        with pil_open()(record.path) as im:
            rgb = np.asarray(im.convert("RGB"))
        mask = white_cell_mask(rgb, seg)
        if mask.any():
            Image.fromarray(before_after(rgb, mask)).save(path)
            return


@dataclass(frozen=True)
class PreparedFolder:
    """A finished cache entry and what it holds."""

    path: Path
    fingerprint: str
    classes: tuple[str, ...]
    counts: Mapping[str, Mapping[str, int]]
    report_path: Path


def prepare_imagefolder(dataset: Mapping[str, Any], cache_dir: Path) -> PreparedFolder:
    """Scan, validate, fingerprint and (once per fingerprint) build the image cache."""
    options = options_from_dataset(dataset)
    report = DataReport(source=str(options.root))
    records = scan(options, report)
    if not records:
        raise DataError(f"{options.root}: no images found")
    fp = fingerprint(options, records)
    target = entry_dir(cache_dir, CACHE_KIND, fp)
    build_once(target, lambda tmp: build_prepared(tmp, records, options, report, fp))
    meta = json.loads((target / META_FILE).read_text())
    return PreparedFolder(
        path=target,
        fingerprint=fp,
        classes=tuple(meta["classes"]),
        counts=meta["counts"],
        report_path=target / "data_report.json",
    )
