"""Small synthetic image-classification folders for the classification tests."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

#: A colour per class, so a tiny network can tell the classes apart in a few epochs.
COLOURS = [(200, 60, 60), (60, 60, 200), (60, 180, 60), (180, 60, 180), (200, 200, 60)]


def make_image(path: Path, class_index: int, seed: int, size: int = 40) -> Path:
    """A noisy image whose mean colour depends on the class, with a purple 'nucleus' blob."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[class_index % len(COLOURS)], dtype=np.float64)
    img = base + rng.normal(0, 25, size=(size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 < (size // 6) ** 2
    img[blob] = (120, 40, 150)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def make_folder(
    root: Path, counts: Mapping[str, int], *, split: str = "all", ext: str = ".png", seed: int = 0
) -> dict[str, list[Path]]:
    """``root/<split>/<class>/<class>_<i><ext>`` with ``counts[class]`` distinct images each."""
    out: dict[str, list[Path]] = {}
    for ci, (name, n) in enumerate(counts.items()):
        folder = root / split / name if split else root / name
        out[name] = [
            make_image(folder / f"{name}_{i:03d}{ext}", ci, seed * 100_003 + ci * 1_000 + i) for i in range(n)
        ]
    return out


def duplicate(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def truncate(path: Path, keep_fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path
