"""HSV white-cell segmentation: a hue-threshold mask of the purple (Giemsa/Wright-stained) nuclei.

The mask keeps pixels whose OpenCV hue (0-179) lies in ``[hue_low, hue_high]``
(purple to magenta) and whose saturation is at least ``max(sat_min, Otsu
threshold of the saturation channel)``, so pale red cells and background stay
out. Morphology then cleans it up: an opening removes speckle, a closing joins
nucleus lobes, components smaller than 0.2% of the image are dropped, holes are
filled, and a small dilation adds a margin of cytoplasm. When nothing passes,
the whole image is kept (an all-ones mask) and the caller reports it.

Masks are computed once per image while the image cache is built, so a trial
switching segmentation on only multiplies cached arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Defaults tuned on pbc8 and all_leukemia (see docs/classification.md).
HUE_LOW = 115
HUE_HIGH = 175
SAT_MIN = 40
MIN_AREA_FRACTION = 0.002


@dataclass(frozen=True)
class SegmentationSettings:
    hue_low: int = HUE_LOW
    hue_high: int = HUE_HIGH
    sat_min: int = SAT_MIN


def white_cell_mask(rgb: np.ndarray, settings: SegmentationSettings | None = None) -> np.ndarray:
    """A ``uint8`` 0/1 mask (H, W) of the stained white cells of an RGB ``uint8`` image.

    Returns an empty (all-zero) mask when nothing is found; ``apply_mask`` callers
    decide what to do with that.
    """
    import cv2

    s = settings or SegmentationSettings()
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hue, sat = hsv[..., 0], hsv[..., 1]
    otsu, _ = cv2.threshold(np.ascontiguousarray(sat), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = ((hue >= s.hue_low) & (hue <= s.hue_high) & (sat >= max(s.sat_min, otsu))).astype(np.uint8)
    size = max(3, round(min(rgb.shape[:2]) / 60) | 1)
    small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    large = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 1, 2 * size + 1))
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, small)
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, large)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= MIN_AREA_FRACTION * closed.size
    mask = keep[labels].astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return np.asarray(cv2.dilate(filled, small, iterations=2), dtype=np.uint8)


def apply_mask(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Images (N, H, W, 3) with everything outside ``masks`` (N, H, W) set to black."""
    return images * masks[..., None].astype(images.dtype)


def before_after(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image and its segmented version side by side (for docs and the data report)."""
    return np.concatenate([rgb, apply_mask(rgb[None], mask[None])[0]], axis=1)
