"""Image-classification folders: scan, validate, split and cache once per content hash.

Accepted layouts (``layout`` option; ``auto`` detects them in this order):

* ``splits``: ``train/<class>/``, ``val/<class>/`` (or ``valid``/``validation``),
  optionally ``test/<class>/``: the given split is used as it is;
* ``all``: ``all/<class>/``, split here (stratified, seeded, group-aware);
* ``flat``: ``<class>/`` directly under the dataset folder, split here.

Extra ``sources`` (other folders, each with its own ``class_map``) are merged
into one task, as the leukemia study merged two datasets. Patient ids from a
metadata CSV, and exact duplicates found by content hash, keep related images
in one split.

Preparing runs once on the driver before Ray starts. Every file is read and
hashed (the fingerprint is content hashes + options + ``CACHE_VERSION``), then
``build_once`` decodes and resizes every image once into
``<cache>/imagefolder/<fingerprint>/``: ``images.npy`` (N, S, S, 3 uint8),
``masks.npy`` (N, S, S white-cell masks), ``split.csv`` (index, source, path,
md5, class, source_class, split, group), ``meta.json`` and the data report.
Trials memory-map those arrays and resize them to their own ``imgsz``.

Bad input (see docs/classification.md): a missing folder, an empty class folder,
a class in val/test but not in train, a class map leaving a class unmapped (unless
``drop_unmapped``) or naming a class that does not exist, a class with no
readable image are fatal ``DataError`` naming the path. A corrupt or truncated
image or a non-image file is dropped and recorded in the data report (fatal with
``bad_images: error``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hemotune.data.cache import build_once, entry_dir
from hemotune.data.images import pil_open
from hemotune.data.report import DataReport
from hemotune.data.segmentation import SegmentationSettings, before_after, white_cell_mask
from hemotune.data.splits import SPLITS, SplitItem, check_fractions, grouped_stratified_split, split_counts
from hemotune.errors import DataError

#: Bump when the cache layout or decoding changes: old cache entries are then rebuilt.
CACHE_VERSION = "imagefolder-1"
CACHE_KIND = "imagefolder"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
LAYOUTS = ("auto", "splits", "all", "flat")
SOURCE_KEYS = (
    "path",
    "layout",
    "class_map",
    "drop_unmapped",
    "metadata_csv",
    "metadata_path_column",
    "metadata_group_column",
)
DEFAULT_CACHE_IMGSZ = 224
SPLIT_FILE = "split.csv"
META_FILE = "meta.json"
IMAGES_FILE = "images.npy"
MASKS_FILE = "masks.npy"
EXAMPLE_FILE = "segmentation_example.png"


# ----------------------------------------------------------------------------- options


def parse_class_map(value: Any, where: str) -> dict[str, str] | None:
    """A class map from a mapping or from ``"Benign:Normal,Early:Cancer"``; ``None`` when unset."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        pairs = [p for p in (s.strip() for s in value.split(",")) if p]
        out: dict[str, str] = {}
        for pair in pairs:
            src, sep, dst = pair.partition(":")
            if not sep or not src.strip() or not dst.strip():
                raise DataError(f"{where}: class_map entry {pair!r} must look like Source:Target")
            out[src.strip()] = dst.strip()
        return out
    if isinstance(value, Mapping):
        bad = [k for k, v in value.items() if not isinstance(v, str) or not str(k)]
        if bad:
            raise DataError(f"{where}: class_map values must be class names (strings); bad keys: {bad}")
        return {str(k): str(v) for k, v in value.items()}
    raise DataError(f"{where}: class_map must be a mapping Source: Target, got {type(value).__name__}")


@dataclass(frozen=True)
class SourceOptions:
    """One folder of images and how its classes map into the task."""

    root: Path
    layout: str = "auto"
    class_map: Mapping[str, str] | None = None
    drop_unmapped: bool = False
    metadata_csv: Path | None = None
    metadata_path_column: str = "path"
    metadata_group_column: str = "patient_id"

    def fingerprint_view(self) -> dict[str, Any]:
        """What of this source changes the prepared data (not its absolute location)."""
        return {
            "layout": self.layout,
            "class_map": dict(sorted((self.class_map or {}).items())),
            "drop_unmapped": self.drop_unmapped,
            "metadata": bool(self.metadata_csv),
            "metadata_columns": [self.metadata_path_column, self.metadata_group_column],
        }


@dataclass(frozen=True)
class ImageFolderOptions:
    """Validated dataset options (see ``ImageClassificationTrainer.dataset_options``)."""

    sources: tuple[SourceOptions, ...]
    fractions: Mapping[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    split_seed: int = 0
    cache_imgsz: int = DEFAULT_CACHE_IMGSZ
    max_images_per_class: int = 0
    bad_images: str = "drop"
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)

    @property
    def root(self) -> Path:
        return self.sources[0].root

    def fingerprint_view(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "sources": [s.fingerprint_view() for s in self.sources],
            "fractions": {k: float(self.fractions.get(k, 0.0)) for k in SPLITS},
            "split_seed": self.split_seed,
            "cache_imgsz": self.cache_imgsz,
            "max_images_per_class": self.max_images_per_class,
            "bad_images": self.bad_images,
            "segmentation": [
                self.segmentation.hue_low,
                self.segmentation.hue_high,
                self.segmentation.sat_min,
            ],
        }


def _resolve(path_text: Any, base: Path | None, where: str) -> Path:
    if not isinstance(path_text, str) or not path_text:
        raise DataError(f"{where}: a path is required")
    if path_text.startswith("s3://"):
        raise DataError(f"{where}: {path_text}: image folders must be on local disk (sync the bucket first)")
    path = Path(path_text).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.resolve()


def _source_options(raw: Mapping[str, Any], base: Path | None, where: str) -> SourceOptions:
    root = _resolve(raw.get("path"), base, f"{where}.path")
    layout = str(raw.get("layout") or "auto")
    if layout not in LAYOUTS:
        raise DataError(f"{where}.layout: {layout!r} is not allowed; allowed: {', '.join(LAYOUTS)}")
    metadata = raw.get("metadata_csv") or None
    return SourceOptions(
        root=root,
        layout=layout,
        class_map=parse_class_map(raw.get("class_map"), f"{where}.class_map ({root})"),
        drop_unmapped=bool(raw.get("drop_unmapped") or False),
        metadata_csv=_resolve(metadata, root, f"{where}.metadata_csv") if metadata else None,
        metadata_path_column=str(raw.get("metadata_path_column") or "path"),
        metadata_group_column=str(raw.get("metadata_group_column") or "patient_id"),
    )


def options_from_dataset(dataset: Mapping[str, Any]) -> ImageFolderOptions:
    """Options from the ``dataset`` mapping of a search space (``path`` plus options)."""
    main = _source_options(dataset, None, "dataset")
    sources = [main]
    extra = dataset.get("sources") or []
    if not isinstance(extra, Sequence) or isinstance(extra, str):
        raise DataError("dataset.sources: must be a list of mappings {path: ..., class_map: {...}}")
    for i, raw in enumerate(extra):
        where = f"dataset.sources[{i}]"
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: must be a mapping {{path: ..., class_map: {{...}}}}")
        unknown = sorted(set(raw) - set(SOURCE_KEYS))
        if unknown:
            raise DataError(f"{where}: unknown keys {unknown}; allowed: {', '.join(SOURCE_KEYS)}")
        sources.append(_source_options(raw, main.root.parent, where))
    fractions = {
        "train": float(dataset.get("train_fraction", 0.7)),
        "val": float(dataset.get("val_fraction", 0.15)),
        "test": float(dataset.get("test_fraction", 0.15)),
    }
    problems = check_fractions(fractions)
    if problems:
        raise DataError(f"dataset {main.root}: " + "; ".join(problems))
    bad_images = str(dataset.get("bad_images") or "drop")
    if bad_images not in ("drop", "error"):
        raise DataError(f"dataset.bad_images: {bad_images!r} is not allowed; allowed: drop, error")
    cache_imgsz = int(dataset.get("cache_imgsz") or DEFAULT_CACHE_IMGSZ)
    if cache_imgsz < 16:
        raise DataError(f"dataset.cache_imgsz must be >= 16, got {cache_imgsz}")
    return ImageFolderOptions(
        sources=tuple(sources),
        fractions=fractions,
        split_seed=int(dataset.get("split_seed", 0) or 0),
        cache_imgsz=cache_imgsz,
        max_images_per_class=int(dataset.get("max_images_per_class", 0) or 0),
        bad_images=bad_images,
        segmentation=SegmentationSettings(
            hue_low=int(dataset.get("seg_hue_low", SegmentationSettings.hue_low)),
            hue_high=int(dataset.get("seg_hue_high", SegmentationSettings.hue_high)),
            sat_min=int(dataset.get("seg_sat_min", SegmentationSettings.sat_min)),
        ),
    )


# ----------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class ImageRecord:
    """One image file found in a source folder."""

    source: int
    root: Path
    relpath: str
    source_class: str
    label: str
    given_split: str | None
    md5: str = ""
    sha256: str = ""
    group: str = ""

    @property
    def path(self) -> Path:
        return self.root / self.relpath


def detect_layout(source: SourceOptions) -> str:
    """``splits``, ``all`` or ``flat``; a folder with none of them is a ``DataError``."""
    root = source.root
    if not root.exists():
        raise DataError(f"dataset path does not exist: {root}")
    if not root.is_dir():
        raise DataError(f"dataset path is not a folder of class folders: {root}")
    if source.layout != "auto":
        return source.layout
    subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in subdirs:
        return "splits"
    if "all" in subdirs:
        return "all"
    if subdirs:
        return "flat"
    raise DataError(
        f"{root}: no class folders found; expected all/<class>/, train|val|test/<class>/ or <class>/"
    )


def _split_dirs(root: Path, layout: str) -> list[tuple[str | None, Path]]:
    if layout == "all":
        folder = root / "all"
        if not folder.is_dir():
            raise DataError(f"{root}: layout 'all' needs a folder {folder}")
        return [(None, folder)]
    if layout == "flat":
        return [(None, root)]
    found: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        split = SPLIT_ALIASES.get(child.name.lower())
        if child.is_dir() and split:
            if split in found:
                raise DataError(
                    f"{root}: two folders give the {split} split: {found[split].name} and {child.name}"
                )
            found[split] = child
    for needed in ("train", "val"):
        if needed not in found:
            raise DataError(f"{root}: layout 'splits' needs a {needed}/ folder (with one folder per class)")
    return [(s, found[s]) for s in SPLITS if s in found]


def _class_files(folder: Path, report: DataReport) -> list[Path]:
    """Image files under one class folder (recursively, sorted); other files are reported."""
    images = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
        else:
            report.add(path, "not an image file (by extension)", "dropped")
    return images


def scan_source(index: int, source: SourceOptions, report: DataReport) -> list[ImageRecord]:
    """Every image of one source with its mapped label; fatal problems raise ``DataError``."""
    layout = detect_layout(source)
    records: list[ImageRecord] = []
    seen_classes: set[str] = set()
    for split, folder in _split_dirs(source.root, layout):
        for stray in sorted(p for p in folder.iterdir() if p.is_file()):
            report.add(stray, "file outside any class folder", "dropped")
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise DataError(f"{folder}: no class folders inside")
        for class_dir in class_dirs:
            files = _class_files(class_dir, report)
            if not files:
                raise DataError(f"empty class folder (no image files): {class_dir}")
            seen_classes.add(class_dir.name)
            label = _map_class(source, class_dir)
            if label is None:
                for path in files:
                    report.add(path, f"class {class_dir.name!r} not in class_map", "dropped")
                continue
            records += [
                ImageRecord(
                    index, source.root, p.relative_to(source.root).as_posix(), class_dir.name, label, split
                )
                for p in files
            ]
    missing = sorted(set(source.class_map or {}) - seen_classes)
    if missing:
        raise DataError(
            f"{source.root}: class_map names classes not found there: {', '.join(missing)}; "
            f"classes found: {', '.join(sorted(seen_classes))}"
        )
    return records


def _map_class(source: SourceOptions, class_dir: Path) -> str | None:
    if source.class_map is None:
        return class_dir.name
    if class_dir.name in source.class_map:
        return source.class_map[class_dir.name]
    if source.drop_unmapped:
        return None
    raise DataError(
        f"class_map leaves class {class_dir.name!r} unmapped (folder {class_dir}); map it, or set "
        f"drop_unmapped: true to leave its images out. class_map: {dict(source.class_map)}"
    )


def _check_given_splits(records: Sequence[ImageRecord]) -> None:
    train_labels = {r.label for r in records if r.given_split == "train"}
    for r in records:
        if r.given_split not in (None, "train") and r.label not in train_labels:
            folder = r.path.parent
            raise DataError(
                f"class {r.label!r} is in the {r.given_split} split but not in train: {folder} "
                f"(a model cannot learn a class it never sees)"
            )


def hash_records(records: Sequence[ImageRecord], workers: int) -> list[ImageRecord]:
    """Records with their md5 (duplicate detection) and sha256 (fingerprint) filled in."""

    def digest(record: ImageRecord) -> ImageRecord:
        md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        with record.path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                md5.update(block)
                sha.update(block)
        return replace(record, md5=md5.hexdigest(), sha256=sha.hexdigest())

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(digest, records))


def attach_patients(records: Sequence[ImageRecord], source: SourceOptions, index: int) -> list[ImageRecord]:
    """Records of source ``index`` with their patient id from its metadata CSV (others unchanged)."""
    if source.metadata_csv is None:
        return list(records)
    csv_path = source.metadata_csv
    if not csv_path.is_file():
        raise DataError(f"metadata_csv not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for column in (source.metadata_path_column, source.metadata_group_column):
            if column not in columns:
                raise DataError(f"{csv_path}: no column {column!r}; columns: {', '.join(columns)}")
        rows = [(row[source.metadata_path_column], row[source.metadata_group_column]) for row in reader]
    by_path = {_normal_relpath(p): g for p, g in rows}
    names = Counter(Path(p).name for p, _ in rows)
    by_name = {Path(p).name: g for p, g in rows if names[Path(p).name] == 1}
    out, missing = [], []
    for r in records:
        if r.source != index:
            out.append(r)
            continue
        parts = Path(r.relpath).parts
        # "all/Benign/x.jpg", then "Benign/x.jpg", then a unique file name "x.jpg".
        candidates = [r.relpath, Path(*parts[1:]).as_posix() if len(parts) > 1 else r.relpath]
        group = next((by_path[c] for c in candidates if by_path.get(c)), None) or by_name.get(parts[-1])
        if not group:
            missing.append(r.relpath)
        out.append(replace(r, group=f"{index}:{group}" if group else ""))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{csv_path}: no {source.metadata_group_column!r} for {len(missing)} images of {source.root}: {shown} "
            f"(a patient-level split needs every image's patient)"
        )
    return out


def _normal_relpath(text: str) -> str:
    path = Path(text.strip()).as_posix()
    return path[2:] if path.startswith("./") else path


def subsample(records: Sequence[ImageRecord], per_class: int, seed: int) -> list[ImageRecord]:
    """At most ``per_class`` images per (given split, class), chosen by a seeded content order."""
    if per_class <= 0:
        return list(records)
    buckets: dict[tuple[str, str], list[ImageRecord]] = defaultdict(list)
    for r in records:
        buckets[(r.given_split or "", r.label)].append(r)
    chosen: list[ImageRecord] = []
    for key in sorted(buckets):
        ranked = sorted(
            buckets[key], key=lambda r: (hashlib.sha256(f"{seed}:{r.md5}".encode()).hexdigest(), r.relpath)
        )
        chosen += ranked[:per_class]
    return sorted(chosen, key=lambda r: (r.source, r.relpath))


def scan(options: ImageFolderOptions, report: DataReport) -> list[ImageRecord]:
    """All records of all sources, hashed, with patients, subsampled; layouts must agree."""
    records: list[ImageRecord] = []
    kinds = set()
    for i, source in enumerate(options.sources):
        found = scan_source(i, source, report)
        kinds.add("given" if any(r.given_split for r in found) else "auto")
        records += found
    if len(kinds) > 1:
        raise DataError(
            f"{options.root}: sources mix given train/val splits with unsplit folders; use one kind for all"
        )
    _check_given_splits(records)
    workers = max(1, min(8, os.cpu_count() or 1))
    records = hash_records(records, workers)
    for i, source in enumerate(options.sources):
        records = attach_patients(records, source, i)
    return subsample(records, options.max_images_per_class, options.split_seed)


def fingerprint(options: ImageFolderOptions, records: Iterable[ImageRecord]) -> str:
    """Content hashes, labels, splits and groups of the images, plus the options and version."""
    digest = hashlib.sha256(json.dumps(options.fingerprint_view(), sort_keys=True).encode())
    for r in records:
        digest.update(
            f"{r.source}\0{r.relpath}\0{r.sha256}\0{r.label}\0{r.given_split}\0{r.group}\n".encode()
        )
    return digest.hexdigest()


# ----------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray | None
    mask: np.ndarray | None
    error: str = ""


def decode_image(path: Path, size: int, seg: SegmentationSettings) -> Decoded:
    """Decode fully (a truncated file raises), convert to RGB, resize to ``size`` square, mask it."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # some library switched it on: truncation must stay an error
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with pil_open()(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale >= size (much faster)
            im.load()
            rgb = im.convert("RGB")
    except UnidentifiedImageError:
        return Decoded(None, None, "not a readable image (unknown format)")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return Decoded(None, None, f"corrupt or truncated image: {type(exc).__name__}: {exc}")
    if min(rgb.size) < 1:
        return Decoded(None, None, "image has zero size")
    full = np.asarray(rgb)
    mask = white_cell_mask(full, seg)
    small = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR))
    small_mask = np.asarray(Image.fromarray(mask * 255).resize((size, size), Image.Resampling.NEAREST)) > 127
    return Decoded(small, small_mask.astype(np.uint8))


# ----------------------------------------------------------------------------- building


def assign_splits(
    records: Sequence[ImageRecord], options: ImageFolderOptions, report: DataReport
) -> list[str]:
    """The split of every record: given folders (duplicates outside train dropped) or computed."""
    if records and records[0].given_split is not None:
        return _given_splits(records, report)
    items = [SplitItem(key=r.md5, label=r.label, groups=(r.group,) if r.group else ()) for r in records]
    return grouped_stratified_split(items, options.fractions, options.split_seed)


def _given_splits(records: Sequence[ImageRecord], report: DataReport) -> list[str]:
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


def decode_all(
    records: Sequence[ImageRecord], options: ImageFolderOptions, report: DataReport
) -> tuple[list[ImageRecord], list[Decoded]]:
    """Decode every record once; unreadable ones are dropped (reported) or fatal (``bad_images: error``)."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = list(
            pool.map(lambda r: decode_image(r.path, options.cache_imgsz, options.segmentation), records)
        )
    good_records, good = [], []
    for record, result in zip(records, decoded, strict=True):
        if result.error:
            if options.bad_images == "error":
                raise DataError(f"{record.path}: {result.error}")
            report.add(record.path, result.error, "dropped")
            continue
        good_records.append(record)
        good.append(result)
    by_class = Counter(r.label for r in good_records)
    for label in sorted({r.label for r in records}):
        if not by_class[label]:
            folders = sorted({str(r.path.parent) for r in records if r.label == label})
            raise DataError(f"class {label!r} has no readable image: {', '.join(folders)}")
    return good_records, good


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
    classes = sorted({records[i].label for i in keep})
    labels_by_split = split_counts([records[i].label for i in order], [splits[i] for i in order])
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
    size = options.cache_imgsz
    images = np.lib.format.open_memmap(
        target / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(len(order), size, size, 3)
    )
    masks = np.lib.format.open_memmap(
        target / MASKS_FILE, mode="w+", dtype=np.uint8, shape=(len(order), size, size)
    )
    for row, i in enumerate(order):
        images[row] = decoded[i].image
        mask = decoded[i].mask
        if mask is None or not mask.any():
            report.add(
                records[i].path,
                "segmentation found no stained cell",
                "kept",
                "with segmentation on, this image is used whole",
            )
            mask = np.ones((size, size), dtype=np.uint8)
        masks[row] = mask
    images.flush()
    masks.flush()
    del images, masks
    _write_split_csv(target / SPLIT_FILE, [records[i] for i in order], [splits[i] for i in order])
    groups = _duplicate_groups([records[i] for i in order])
    report.counts.update(
        {
            "images": len(order),
            "classes": len(classes),
            "splits": labels_by_split,
            "duplicate_groups": len(groups),
            "images_in_duplicate_groups": sum(len(g) for g in groups),
            "patient_groups": len({records[i].group for i in order if records[i].group}),
            "split_seed": options.split_seed,
            "fractions": dict(options.fractions),
            "cache_imgsz": size,
        }
    )
    report.write(target)
    meta = {
        "version": CACHE_VERSION,
        "fingerprint": fp,
        "classes": classes,
        "cache_imgsz": size,
        "num_images": len(order),
        "counts": labels_by_split,
        "sources": [str(s.root) for s in options.sources],
    }
    (target / META_FILE).write_text(json.dumps(meta, indent=2))
    _write_example(target / EXAMPLE_FILE, [records[i] for i in order], options.segmentation)


def _write_split_csv(path: Path, records: Sequence[ImageRecord], splits: Sequence[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "source", "path", "md5", "class", "source_class", "split", "group"])
        for i, (r, s) in enumerate(zip(records, splits, strict=True)):
            writer.writerow([i, r.source, r.relpath, r.md5, r.label, r.source_class, s, r.group])


def _duplicate_groups(records: Sequence[ImageRecord]) -> list[list[ImageRecord]]:
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


# ----------------------------------------------------------------------------- public entry points


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


@dataclass
class LoadedSplit:
    """The images of one split, memory-mapped, with integer labels."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    paths: list[str]


def read_split_table(prepared: Path) -> list[dict[str, str]]:
    with (prepared / SPLIT_FILE).open(newline="") as fh:
        return list(csv.DictReader(fh))


def load_prepared(prepared: Path) -> tuple[dict[str, Any], dict[str, LoadedSplit]]:
    """``meta.json`` and the memory-mapped arrays of every split of a prepared folder."""
    meta_path = prepared / META_FILE
    if not meta_path.is_file():
        raise DataError(f"{prepared} is not a prepared image folder (no {META_FILE}); run prepare_data first")
    meta = json.loads(meta_path.read_text())
    classes = meta["classes"]
    index = {c: i for i, c in enumerate(classes)}
    images = np.load(prepared / IMAGES_FILE, mmap_mode="r")
    masks = np.load(prepared / MASKS_FILE, mmap_mode="r")
    rows = read_split_table(prepared)
    out: dict[str, LoadedSplit] = {}
    for split in SPLITS:
        chosen = [r for r in rows if r["split"] == split]
        if not chosen:
            continue
        idx = np.array([int(r["index"]) for r in chosen])
        # Rows of one split are contiguous (split.csv is ordered by split), so slices stay memory-mapped.
        lo, hi = int(idx.min()), int(idx.max()) + 1
        if hi - lo != len(idx):
            raise DataError(f"{prepared / SPLIT_FILE}: rows of split {split} are not contiguous")
        out[split] = LoadedSplit(
            images=images[lo:hi],
            masks=masks[lo:hi],
            labels=np.array([index[r["class"]] for r in chosen], dtype=np.int64),
            paths=[r["path"] for r in chosen],
        )
    return meta, out
