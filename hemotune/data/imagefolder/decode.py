"""Decoding the images of an image-classification set once, at the cache size, with their cell masks.

Every image is decoded fully (a truncated file is an error, whatever a library
switched on), converted to RGB, resized to the cache's square size and given
its HSV white-cell mask (``hemotune.data.stain_mask``), on a thread pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hemotune.data.imagefolder.options import ImageFolderOptions
from hemotune.data.imagefolder.scan import ImageRecord, worker_count
from hemotune.data.images import pil_open
from hemotune.data.report import DataReport
from hemotune.data.stain_mask import SegmentationSettings, white_cell_mask
from hemotune.errors import DataError


@dataclass(frozen=True)
class Decoded:
    """One decoded image at the cache size and its white-cell mask, or why it could not be read."""

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


def decode_all(
    records: Sequence[ImageRecord], options: ImageFolderOptions, report: DataReport
) -> tuple[list[ImageRecord], list[Decoded]]:
    """Decode every record once; unreadable ones are dropped (reported) or fatal (``bad_images: error``)."""
    with ThreadPoolExecutor(max_workers=worker_count()) as pool:
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
