"""Detection datasets (Pascal VOC, Ultralytics YOLO): read, validate, repair, convert once to YOLO.

``prepare_detection_data`` is the entry point the detection trainer uses; the
readers (``read_voc``, ``read_yolo``) return a ``DetectionSet`` whose
``report`` says what was found and changed. Modules: ``model`` (the shared data
model), ``checks`` (image and box checks both readers run), ``voc``, ``yolo``
(layout and reading), ``write`` (split selection and writing a YOLO set),
``prepare`` (the cached conversion).
"""

from __future__ import annotations

from hemotune.data.detection.checks import (
    IMAGE_SUFFIXES,
    ImageCheck,
    check_image,
    list_images,
    relative_name,
    repair_boxes,
)
from hemotune.data.detection.model import (
    SPLITS,
    Box,
    ClassNames,
    DetectionSet,
    LabeledImage,
    RawBox,
    finished_set,
    name_key,
    normalise_name,
)
from hemotune.data.detection.prepare import (
    CACHE_KIND,
    CONVERTER_VERSION,
    detect_format,
    prepare_detection_data,
    read_report,
    summarise,
)
from hemotune.data.detection.voc import is_voc, read_voc, voc_source_files
from hemotune.data.detection.write import DEFAULT_VAL_FRACTION, select_splits, write_yolo, yolo_label_lines
from hemotune.data.detection.yolo import (
    DATA_YAML,
    YoloLayout,
    find_data_yaml,
    label_path,
    read_yolo,
    yolo_layout,
    yolo_source_files,
)

__all__ = [
    "CACHE_KIND",
    "CONVERTER_VERSION",
    "DATA_YAML",
    "DEFAULT_VAL_FRACTION",
    "IMAGE_SUFFIXES",
    "SPLITS",
    "Box",
    "ClassNames",
    "DetectionSet",
    "ImageCheck",
    "LabeledImage",
    "RawBox",
    "YoloLayout",
    "check_image",
    "detect_format",
    "find_data_yaml",
    "finished_set",
    "is_voc",
    "label_path",
    "list_images",
    "name_key",
    "normalise_name",
    "prepare_detection_data",
    "read_report",
    "read_voc",
    "read_yolo",
    "relative_name",
    "repair_boxes",
    "select_splits",
    "summarise",
    "voc_source_files",
    "write_yolo",
    "yolo_label_lines",
    "yolo_layout",
    "yolo_source_files",
]
