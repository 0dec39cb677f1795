"""Reading a prepared image-classification cache entry in a trial: memory-mapped, never decoded again.

``load_prepared`` returns ``meta.json`` and one ``LoadedSplit`` per split, whose
arrays are slices of the memory-mapped ``images.npy``/``masks.npy`` (the rows
of one split are contiguous, as ``build.py`` writes them).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemotune.data.imagefolder.options import IMAGES_FILE, MASKS_FILE, META_FILE, SPLIT_FILE
from hemotune.data.splits import SPLITS
from hemotune.errors import DataError


@dataclass
class LoadedSplit:
    """The images of one split, memory-mapped, with integer labels."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    paths: list[str]


def read_split_table(prepared: Path) -> list[dict[str, str]]:
    """The rows of a prepared folder's ``split.csv`` (index, source, path, md5, class, ...)."""
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
