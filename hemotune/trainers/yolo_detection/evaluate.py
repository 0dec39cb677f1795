"""Evaluating a detection ``best.pt`` on one split with Ultralytics' own validator.

``YOLO(weights).val(split=...)`` runs the validator training runs after every
epoch, on the trial's own data.yaml (``trial_data_yaml``), at the trial's
``imgsz`` and validation batch (twice the training batch, as Ultralytics'
trainer uses), with its default thresholds (conf 0.001, IoU 0.7), and the
results are read by ``run.validator_metrics``: the same names and values the
epoch reports log, under ``<split>/``. Not bit-identical to the logged epoch:
``best.pt`` stores the EMA weights in fp16 and the standalone validator fuses
Conv+BN, so values agree to the validator's rounding (about 1e-3), not exactly.

The model's class names must be the data's, in order (a test set prepared by
``prepare_test_data`` is converted with the training classes, so they are). A
class without boxes in the split has no AP50 and is not in Ultralytics' mAP: it
is reported (``missing_classes``; ``map_over`` lists the classes averaged).

Each image's validator statistics (``per_image.py``) are saved beside the details as
``<split>_per_image.npz`` (``per_image_file``): ``hemotune evaluate`` recomputes mAP
over resamples of the test images from them, with Ultralytics' ``ap_per_class``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hemotune.data.prepared import PreparedData
from hemotune.errors import UsageError
from hemotune.trainers.base import TrialContext, write_per_image
from hemotune.trainers.yolo_detection.args import trial_data_yaml
from hemotune.trainers.yolo_detection.params import DEFAULTS
from hemotune.trainers.yolo_detection.patches import ultralytics_session
from hemotune.trainers.yolo_detection.per_image import per_image_validator, stack_stats
from hemotune.trainers.yolo_detection.run import validator_metrics

log = logging.getLogger(__name__)


def split_data_yaml(data: PreparedData, split: str, folder: Path) -> tuple[Path, list[str]]:
    """This evaluation's data.yaml (in ``folder``) and the data's classes; a missing split is a ``UsageError``."""
    data_yaml = trial_data_yaml(data.path, folder)
    cfg = yaml.safe_load(data_yaml.read_text())
    present = cfg.get("hemotune_splits") or [s for s in ("train", "val", "test") if cfg.get(s)]
    if split not in present:
        raise UsageError(
            f"dataset {data.source} (prepared at {data.path}) has no {split} split; it has: {', '.join(present)}"
        )
    names = cfg["names"]
    classes = [str(names[k]) for k in sorted(names, key=int)] if isinstance(names, Mapping) else list(names)
    return data_yaml, classes


def evaluate_detector(
    weights: Path, data: PreparedData, split: str, resolved: Mapping[str, Any], context: TrialContext
) -> dict[str, Any]:
    """``{"metrics": {<split>/mAP50-95, ...}, "classes", "missing_classes", "map_over", ...}``."""
    from hemotune.offline import configure_ultralytics

    folder = Path(context.workdir).resolve() / "evaluation"
    data_yaml, classes = split_data_yaml(data, split, folder)
    if not Path(weights).is_file():
        raise UsageError(f"weights file not found: {weights}")
    values = {**DEFAULTS, **dict(resolved)}
    per_image: list[dict[str, Any]] = []
    configure_ultralytics()
    with ultralytics_session():
        from ultralytics import YOLO

        model = YOLO(str(weights), task="detect")
        names = [str(model.names[i]) for i in sorted(model.names)]
        if names != classes:
            raise UsageError(
                f"{weights} was trained on classes {names}, dataset {data.source} has {classes}: "
                "prepare the test set with the training classes (prepare_test_data)"
            )
        results = model.val(
            validator=per_image_validator(per_image),
            data=str(data_yaml),
            split=split,
            imgsz=int(values["imgsz"]),
            batch=2 * int(values["batch"]),
            device=context.device,
            workers=int(values.get("workers", context.num_workers)),
            plots=False,
            save_json=False,
            verbose=False,
            project=str(folder),
            name=split,
            exist_ok=True,
        )
    metrics = validator_metrics(results.results_dict, results.box, dict(enumerate(names)), split)
    present = sorted(int(i) for i in results.box.ap_class_index)
    missing = [c for i, c in enumerate(classes) if i not in present]
    if missing:
        log.warning(
            "%s split of %s has no box of class(es) %s: no AP50 for them, and mAP is over %s only",
            split,
            data.source,
            ", ".join(missing),
            ", ".join(classes[i] for i in present),
        )
    details: dict[str, Any] = {
        "split": split,
        "weights": str(weights),
        "data": str(data.source),
        "classes": classes,
        "missing_classes": missing,
        "map_over": [classes[i] for i in present],
        "metrics": metrics,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.json").write_text(json.dumps(details, indent=2))
    stats = stack_stats(per_image, classes, Path(data.path))
    details["per_image_file"] = str(write_per_image(folder, split, stats))
    details["images"] = len(per_image)
    return details
