"""Image-classification folders: scan, validate, split and cache once per content hash.

``prepare_imagefolder`` (on the driver, before Ray starts) turns a search
space's ``dataset`` mapping into a cache entry; ``load_prepared`` (in a trial)
memory-maps it. Modules: ``options`` (the validated dataset options and cache
file names), ``scan`` (layouts, class maps, hashes, patients), ``decode``,
``build`` (splits and writing the entry), ``load``. Bad input is described in
docs/classification.md.
"""

from __future__ import annotations

from hemotune.data.imagefolder.build import PreparedFolder, assign_splits, build_prepared, prepare_imagefolder
from hemotune.data.imagefolder.decode import Decoded, decode_all, decode_image
from hemotune.data.imagefolder.load import LoadedSplit, load_prepared, read_split_table
from hemotune.data.imagefolder.options import (
    CACHE_KIND,
    CACHE_VERSION,
    DEFAULT_CACHE_IMGSZ,
    EXAMPLE_FILE,
    IMAGE_EXTENSIONS,
    IMAGES_FILE,
    LAYOUTS,
    MASKS_FILE,
    META_FILE,
    SOURCE_KEYS,
    SPLIT_ALIASES,
    SPLIT_FILE,
    ImageFolderOptions,
    SourceOptions,
    options_from_dataset,
    parse_class_map,
)
from hemotune.data.imagefolder.scan import (
    ImageRecord,
    attach_patients,
    detect_layout,
    fingerprint,
    hash_records,
    scan,
    scan_source,
    subsample,
)

__all__ = [
    "CACHE_KIND",
    "CACHE_VERSION",
    "DEFAULT_CACHE_IMGSZ",
    "EXAMPLE_FILE",
    "IMAGES_FILE",
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "MASKS_FILE",
    "META_FILE",
    "SOURCE_KEYS",
    "SPLIT_ALIASES",
    "SPLIT_FILE",
    "Decoded",
    "ImageFolderOptions",
    "ImageRecord",
    "LoadedSplit",
    "PreparedFolder",
    "SourceOptions",
    "assign_splits",
    "attach_patients",
    "build_prepared",
    "decode_all",
    "decode_image",
    "detect_layout",
    "fingerprint",
    "hash_records",
    "load_prepared",
    "options_from_dataset",
    "parse_class_map",
    "prepare_imagefolder",
    "read_split_table",
    "scan",
    "scan_source",
    "subsample",
]
