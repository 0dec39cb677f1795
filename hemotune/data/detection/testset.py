"""An independent detection test set (VOC or YOLO), converted once with the training classes.

``prepare_detection_test_set`` checks the set's class names against the
training classes first (matched by name ignoring case and whitespace, as the
readers do; a YOLO set may order its ``names`` differently, and its label ids are
remapped by name), so a class the model never learned is a ``UsageError`` naming
it rather than boxes dropped quietly. It then converts the set with
``prepare_detection_data(test_only=True)``: its declared test split (VOC
``ImageSets/Main/test.txt``, data.yaml ``test``), else every usable image,
becomes ``images/test`` of a cache entry whose class ids are the training ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hemotune.data.detection.model import ClassNames, normalise_name
from hemotune.data.detection.prepare import detect_format, prepare_detection_data
from hemotune.data.detection.voc import voc_class_names
from hemotune.data.detection.yolo import yolo_layout
from hemotune.data.prepared import PreparedData
from hemotune.errors import UsageError


def declared_class_names(path: Path, data_format: str = "auto") -> list[str]:
    """The class names a set uses: VOC object names in its XML files, YOLO ``names`` of data.yaml."""
    fmt = detect_format(path) if data_format == "auto" else data_format
    if fmt == "voc":
        return voc_class_names(path)
    return [normalise_name(n) or n for n in yolo_layout(path, require_train=False).names]


def prepare_detection_test_set(
    path: str | Path, cache_dir: Path, classes: Sequence[str], data_format: str = "auto"
) -> PreparedData:
    """Check and convert the test set at ``path``; its ``test`` split holds the test images."""
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise UsageError(f"test set not found: {source}")
    known = ClassNames(classes)
    unknown = sorted({n for n in declared_class_names(source, data_format) if known.canonical(n) is None})
    if unknown:
        raise UsageError(
            f"test set {source}: class {unknown[0]!r} is not a class the model was trained on "
            f"({', '.join(known.classes)})"
        )
    return prepare_detection_data(source, cache_dir, data_format=data_format, classes=classes, test_only=True)
