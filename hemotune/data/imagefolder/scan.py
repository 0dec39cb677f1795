"""Finding the images of an image-classification dataset: layouts, class maps, hashes, patients.

Accepted layouts (``layout`` option; ``auto`` detects them in this order):

* ``splits``: ``train/<class>/``, ``val/<class>/`` (or ``valid``/``validation``),
  optionally ``test/<class>/``: the given split is used as it is;
* ``all``: ``all/<class>/``, split here (stratified, seeded, group-aware);
* ``flat``: ``<class>/`` directly under the dataset folder, split here.

Extra ``sources`` (other folders, each with its own ``class_map``) are merged
into one task, as the leukemia study merged two datasets. Every file is read
and hashed (md5 finds exact duplicates, sha256 goes into the fingerprint);
patient ids from a metadata CSV keep one patient's images in one split.

Fatal problems (a missing folder, an empty class folder, a class in val/test
but not in train, a class map leaving a class unmapped unless
``drop_unmapped``, or naming a class that does not exist) raise ``DataError``
naming the path; a non-image file is dropped and recorded in the data report.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from hemotune.data.imagefolder.options import (
    IMAGE_EXTENSIONS,
    SPLIT_ALIASES,
    ImageFolderOptions,
    SourceOptions,
)
from hemotune.data.report import DataReport
from hemotune.data.splits import SPLITS
from hemotune.errors import DataError


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


def worker_count() -> int:
    """Threads for hashing and decoding: the CPU count, between 1 and 8."""
    return max(1, min(8, os.cpu_count() or 1))


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
    """The folders holding class folders, each with its given split (``None``: split here)."""
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
            seen_classes.add(class_dir.name)
            records += _class_records(index, source, class_dir, split, report)
    missing = sorted(set(source.class_map or {}) - seen_classes)
    if missing:
        raise DataError(
            f"{source.root}: class_map names classes not found there: {', '.join(missing)}; "
            f"classes found: {', '.join(sorted(seen_classes))}"
        )
    return records


def _class_records(
    index: int, source: SourceOptions, class_dir: Path, split: str | None, report: DataReport
) -> list[ImageRecord]:
    """The records of one class folder under its mapped label (none when the map drops it, reported)."""
    files = _class_files(class_dir, report)
    if not files:
        raise DataError(f"empty class folder (no image files): {class_dir}")
    label = _map_class(source, class_dir)
    if label is None:
        for path in files:
            report.add(path, f"class {class_dir.name!r} not in class_map", "dropped")
        return []
    return [
        ImageRecord(index, source.root, p.relative_to(source.root).as_posix(), class_dir.name, label, split)
        for p in files
    ]


def _map_class(source: SourceOptions, class_dir: Path) -> str | None:
    """The task label of a class folder; ``None`` when ``drop_unmapped`` leaves it out."""
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
    """Every class of a given val or test split must be in train too."""
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


def _read_patients(source: SourceOptions) -> list[tuple[str, str]]:
    """``(path, patient)`` rows of the source's metadata CSV; missing file or columns are errors."""
    csv_path = source.metadata_csv
    if csv_path is None or not csv_path.is_file():
        raise DataError(f"metadata_csv not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for column in (source.metadata_path_column, source.metadata_group_column):
            if column not in columns:
                raise DataError(f"{csv_path}: no column {column!r}; columns: {', '.join(columns)}")
        return [(row[source.metadata_path_column], row[source.metadata_group_column]) for row in reader]


def attach_patients(records: Sequence[ImageRecord], source: SourceOptions, index: int) -> list[ImageRecord]:
    """Records of source ``index`` with their patient id from its metadata CSV (others unchanged)."""
    if source.metadata_csv is None:
        return list(records)
    rows = _read_patients(source)
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
            f"{source.metadata_csv}: no {source.metadata_group_column!r} for {len(missing)} images of "
            f"{source.root}: {shown} (a patient-level split needs every image's patient)"
        )
    return out


def _normal_relpath(text: str) -> str:
    """A metadata CSV path in the form record paths have (POSIX, no leading ``./``)."""
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
    records = hash_records(records, worker_count())
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
