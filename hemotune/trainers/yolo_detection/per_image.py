"""Per-image statistics of one Ultralytics validation, and the mAP recomputed over any subset of images.

mAP is not a mean over images: it is computed from every prediction of the split at
once (sorted by confidence, matched at 10 IoU thresholds). To bootstrap it over test
images, the evaluation keeps, for each image, exactly what Ultralytics'
``DetectionValidator.update_metrics`` hands to ``DetMetrics.update_stats``: the
``tp`` matrix (one row per prediction, one column per IoU threshold 0.50:0.95, from
``_process_batch``), ``conf``, ``pred_cls`` and the image's ``target_cls``. They are
captured by a validator subclass (``per_image_validator``) that calls the original
``update_metrics`` and copies what it appended, so nothing is recomputed by hand.

``detection_metric`` rebuilds the concatenated arrays for a multiset of image indices
(a bootstrap resample draws an image several times: its predictions and targets are
repeated as many times) and calls Ultralytics' own ``ap_per_class``; mAP50-95, mAP50,
P and R are then taken exactly as ``ultralytics.utils.metrics.Metric`` takes them
(``all_ap.mean()``, ``all_ap[:, 0].mean()``, ``p.mean()``, ``r.mean()``). Over all
images, in the validator's order, the arrays are the validator's own, so the values
equal its ``metrics/mAP50-95(B)`` etc. exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hemotune.errors import UsageError
from hemotune.metrics import metric_key

#: What ``update_metrics`` records per image (``DetMetrics.stats`` keys, less ``target_img``).
STAT_KEYS = ("tp", "conf", "pred_cls", "target_cls")
#: IoU thresholds of Ultralytics' ``tp`` matrix (``DetectionValidator.iouv``: 0.50 to 0.95).
N_IOU = 10


def per_image_validator(sink: list[dict[str, Any]]) -> type:
    """Ultralytics' ``DetectionValidator``, also appending each image's statistics to ``sink``."""
    from ultralytics.models.yolo.detect import DetectionValidator

    class PerImageValidator(DetectionValidator):
        """The validator unchanged; after each ``update_metrics`` the entries it added are copied."""

        def update_metrics(self, preds: Any, batch: dict[str, Any]) -> None:
            start = len(self.metrics.stats["tp"])
            super().update_metrics(preds, batch)
            for k, image in enumerate(batch["im_file"]):
                stats = {key: np.array(self.metrics.stats[key][start + k]) for key in STAT_KEYS}
                sink.append({"image": str(image), **stats})

    return PerImageValidator


def image_name(image: str, root: Path) -> str:
    """An image's path relative to the prepared dataset (stable across nodes), else its file name."""
    path = Path(image).resolve()
    try:
        return str(path.relative_to(Path(root).resolve()))
    except ValueError:
        return os.path.basename(image)


def stack_stats(
    records: Sequence[Mapping[str, Any]], classes: Sequence[str], root: Path
) -> dict[str, np.ndarray]:
    """One array per statistic over all images, in the validator's order, with each row's image index."""
    n_pred = [len(r["conf"]) for r in records]
    n_target = [len(r["target_cls"]) for r in records]
    tp = [np.asarray(r["tp"]).reshape(-1, N_IOU) for r in records]
    return {
        "images": np.array([image_name(r["image"], root) for r in records], dtype=str),
        "classes": np.array(list(classes), dtype=str),
        "tp": np.concatenate(tp, 0) if tp else np.zeros((0, N_IOU), dtype=bool),
        "conf": np.concatenate([r["conf"] for r in records], 0) if records else np.zeros(0),
        "pred_cls": np.concatenate([r["pred_cls"] for r in records], 0) if records else np.zeros(0),
        "pred_image": np.repeat(np.arange(len(records)), n_pred),
        "target_cls": np.concatenate([r["target_cls"] for r in records], 0) if records else np.zeros(0),
        "target_image": np.repeat(np.arange(len(records)), n_target),
    }


def resample(stats: Mapping[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
    """The concatenated arrays of images ``indices`` (repeats allowed), in image order."""
    counts = np.bincount(np.asarray(indices, dtype=np.int64), minlength=len(stats["images"]))
    per_pred, per_target = counts[stats["pred_image"]], counts[stats["target_image"]]
    out = {key: np.repeat(stats[key], per_pred, axis=0) for key in ("tp", "conf", "pred_cls")}
    out["target_cls"] = np.repeat(stats["target_cls"], per_target, axis=0)
    return out


def detection_metric(stats: Mapping[str, np.ndarray], metric: str, indices: np.ndarray) -> float:
    """``<split>/mAP50-95``, ``mAP50``, ``precision``, ``recall`` or ``AP50/<class>`` over ``indices``."""
    from ultralytics.utils.metrics import ap_per_class

    name = metric.split("/", 1)[1] if "/" in metric else metric
    chosen = resample(stats, indices)
    _, _, p, r, _, ap, present, *_ = ap_per_class(
        chosen["tp"], chosen["conf"], chosen["pred_cls"], chosen["target_cls"]
    )
    if name == "mAP50-95":
        return float(ap.mean()) if len(ap) else 0.0
    if name == "mAP50":
        return float(ap[:, 0].mean()) if len(ap) else 0.0
    if name in ("precision", "recall"):
        values = p if name == "precision" else r
        return float(values.mean()) if len(values) else 0.0
    classes = [metric_key(str(c)) for c in stats["classes"]]
    if name.startswith("AP50/") and name.removeprefix("AP50/") in classes:
        index = classes.index(name.removeprefix("AP50/"))
        where = [i for i, c in enumerate(present.tolist()) if c == index]
        return float(ap[where[0], 0]) if where else 0.0
    raise UsageError(
        f"{metric!r} cannot be recomputed from per-image detection statistics; "
        "recomputable: mAP50-95, mAP50, precision, recall, AP50/<class>"
    )
