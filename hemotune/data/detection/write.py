"""Choosing the train and val images of a detection set, and writing them as a YOLO set.

Splits and subsets are chosen by hashing ``selection_seed`` with each image id
(no dependence on Python's random module or on file order), so every node
converting the same source with the same options writes the same set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hemotune.data.detection.model import DetectionSet, LabeledImage
from hemotune.data.detection.yolo import DATA_YAML
from hemotune.data.images import pil_open
from hemotune.errors import DataError

DEFAULT_VAL_FRACTION = 0.2


def _ranked(ids: Sequence[str], seed: int, salt: str) -> list[str]:
    """``ids`` in a pseudo-random order that depends only on ``seed``, ``salt`` and the ids."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\0{salt}\0{i}".encode()).hexdigest())


def select_splits(
    dataset: DetectionSet,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    selection_seed: int = 0,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The train, val (and test) ids to convert, and a record of how they were chosen.

    The source's own split lists are used when it has both; otherwise a seeded
    split of its images (``val_fraction`` of them, at least one, go to val).
    ``max_*_images`` then keep a seeded subset of each split. A test split the
    source declares is kept whole and never joins the pool that is split.
    """
    record: dict[str, Any] = {"split source": dataset.split_source}
    test = list(dataset.splits.get("test", []))
    if "train" in dataset.splits and "val" in dataset.splits:
        splits = {"train": list(dataset.splits["train"]), "val": list(dataset.splits["val"])}
    else:
        held_out = set(test)
        pool = dataset.splits.get("trainval", [i for i in sorted(dataset.images) if i not in held_out])
        if not 0 < val_fraction < 1:
            raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        n_val = max(1, round(len(pool) * val_fraction)) if len(pool) > 1 else 0
        ranked = _ranked(pool, selection_seed, "split")
        splits = {"train": sorted(ranked[n_val:]), "val": sorted(ranked[:n_val])}
        record["seeded split"] = {"val_fraction": val_fraction, "selection_seed": selection_seed}
    for split, limit in (("train", max_train_images), ("val", max_val_images)):
        if limit is not None and len(splits[split]) > limit:
            record[f"{split} subset"] = (
                f"{limit} of {len(splits[split])} images (selection_seed {selection_seed})"
            )
            splits[split] = sorted(_ranked(splits[split], selection_seed, split)[:limit])
    for split in ("train", "val"):
        if not splits[split]:
            raise DataError(f"{dataset.source}: no usable images in the {split} split (see the data report)")
    if test:
        splits["test"] = test
    return splits, record


def independent_test_split(dataset: DetectionSet) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The images of an independent test set: its declared test split, else every usable image.

    VOC train/val lists and data.yaml train/val entries do not count as a
    declaration: data.yaml needs them, whatever the set is for.
    """
    declared = "test" in dataset.splits
    ids, seen = [], set()
    for image_id in list(dataset.splits["test"]) if declared else sorted(dataset.images):
        path = dataset.images[image_id].image_path.resolve()
        if path not in seen:  # data.yaml train and val may name the same images
            seen.add(path)
            ids.append(image_id)
    if not ids:
        raise DataError(f"{dataset.source}: no usable test images (see the data report)")
    which = "its declared test split" if declared else "every usable image (no test split declared)"
    return {"test": ids}, {"split source": dataset.split_source, "test set": which}


def _file_name(image: LabeledImage) -> str:
    """The image's file name in the converted set: its id, flattened, with its suffix."""
    return image.image_id.replace("/", "__") + image.image_path.suffix.lower()


def _place_image(image: LabeledImage, dst: Path) -> str:
    """Put the image at ``dst``: a hard link, else a copy; re-encoded when it needs repair."""
    if image.needs_reencode:
        from PIL import ImageOps

        with pil_open()(image.image_path) as im:
            ImageOps.exif_transpose(im).save(dst, "JPEG", subsampling=0, quality=100)
        return "re-encoded"
    try:
        os.link(image.image_path, dst)
        return "linked"
    except OSError:
        shutil.copy2(image.image_path, dst)
        return "copied"


def yolo_label_lines(image: LabeledImage, classes: Sequence[str]) -> list[str]:
    """The label lines of one image: ``class x_center y_center width height``, normalised."""
    index = {c: i for i, c in enumerate(classes)}
    lines = []
    for b in image.boxes:
        xc, yc = (b.xmin + b.xmax) / 2 / image.width, (b.ymin + b.ymax) / 2 / image.height
        w, h = b.width / image.width, b.height / image.height
        lines.append(f"{index[b.label]} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}")
    return lines


def write_yolo(
    dataset: DetectionSet, splits: Mapping[str, Sequence[str]], out: Path, final_dir: Path
) -> dict[str, int]:
    """Write ``splits`` of ``dataset`` as a YOLO set into ``out``; data.yaml names ``final_dir``.

    data.yaml has an entry per split written. Ultralytics' dataset check needs
    ``train`` and ``val``: a set without one names another split's images there
    (an independent test set names its test images), ``hemotune_splits`` the real ones. Returns how many images were linked, copied or re-encoded.
    """
    placed: dict[str, int] = {}
    for split, ids in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            image = dataset.images[image_id]
            name = _file_name(image)
            how = _place_image(image, out / "images" / split / name)
            placed[how] = placed.get(how, 0) + 1
            lines = yolo_label_lines(image, dataset.classes)
            (out / "labels" / split / Path(name).with_suffix(".txt")).write_text(
                "".join(f"{x}\n" for x in lines)
            )
    entries = {s: f"images/{s}" for s in ("train", "val", "test") if s in splits}
    fallback = entries.get("test") or next(iter(entries.values()))
    data_yaml = {
        "path": str(final_dir),
        "train": entries.get("train", fallback),
        "val": entries.get("val", fallback),
        **({"test": entries["test"]} if "test" in entries else {}),
        "hemotune_splits": list(entries),  # the splits really written (Ultralytics ignores the key)
        "nc": len(dataset.classes),
        "names": dict(enumerate(dataset.classes)),
    }
    (out / DATA_YAML).write_text(yaml.safe_dump(data_yaml, sort_keys=False))
    return placed
