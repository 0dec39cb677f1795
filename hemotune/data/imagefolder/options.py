"""The options of an image-classification dataset, validated from a search space's ``dataset``.

``options_from_dataset`` turns the ``dataset`` mapping (``path`` plus options,
and extra ``sources`` each with its own ``class_map``) into an
``ImageFolderOptions``; every bad value is a ``DataError`` naming its key. The
file names of a prepared cache entry live here too, since both building and
loading use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemotune.data.splits import SPLITS, check_fractions
from hemotune.data.stain_mask import SegmentationSettings
from hemotune.errors import DataError
from hemotune.storage import is_s3

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
        """The main source's folder (named in errors and the data report)."""
        return self.sources[0].root

    def fingerprint_view(self) -> dict[str, Any]:
        """What of these options changes the prepared data (with the cache version)."""
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
    """An absolute local path (relative ones under ``base``); S3 addresses are refused."""
    if not isinstance(path_text, str) or not path_text:
        raise DataError(f"{where}: a path is required")
    if is_s3(path_text):
        raise DataError(f"{where}: {path_text}: image folders must be on local disk (sync the bucket first)")
    path = Path(path_text).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.resolve()


def _source_options(raw: Mapping[str, Any], base: Path | None, where: str) -> SourceOptions:
    """One source's options from its mapping (``where`` names it in errors)."""
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


def _extra_sources(dataset: Mapping[str, Any], base: Path) -> list[SourceOptions]:
    """The ``sources`` list of ``dataset`` (relative paths under ``base``), each checked for unknown keys."""
    extra = dataset.get("sources") or []
    if not isinstance(extra, Sequence) or isinstance(extra, str):
        raise DataError("dataset.sources: must be a list of mappings {path: ..., class_map: {...}}")
    sources = []
    for i, raw in enumerate(extra):
        where = f"dataset.sources[{i}]"
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: must be a mapping {{path: ..., class_map: {{...}}}}")
        unknown = sorted(set(raw) - set(SOURCE_KEYS))
        if unknown:
            raise DataError(f"{where}: unknown keys {unknown}; allowed: {', '.join(SOURCE_KEYS)}")
        sources.append(_source_options(raw, base, where))
    return sources


def options_from_dataset(dataset: Mapping[str, Any]) -> ImageFolderOptions:
    """Options from the ``dataset`` mapping of a search space (``path`` plus options)."""
    main = _source_options(dataset, None, "dataset")
    sources = [main, *_extra_sources(dataset, main.root.parent)]
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
