"""Evaluating a classification ``best.pt`` on one split of a prepared image folder (imports torch).

The same code path as training's per-epoch validation: the model is rebuilt by
``Runtime.build`` from the checkpoint's architecture, the split is resized by
``split_tensors``, predicted by ``loop.evaluate`` and scored by
``classification_metrics``, so the val split reproduces the logged best metric.
Labels are matched to the checkpoint's classes by name. A class with no image in
the split is reported (a warning and ``missing_classes``): its per-class metrics
are absent and the macro averages run over the classes present (``macro_over``),
instead of averaging a meaningless 0 in. Details go to
``<workdir>/evaluation/<split>.json`` with the confusion matrix beside them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hemotune.data.imagefolder import load_prepared
from hemotune.data.prepared import PreparedData
from hemotune.errors import UsageError
from hemotune.trainers.base import TrialContext, write_per_image
from hemotune.trainers.image_classification.batches import split_tensors
from hemotune.trainers.image_classification.loop import evaluate as predict
from hemotune.trainers.image_classification.metrics import (
    classification_metrics,
    confusion,
    write_confusion_artifacts,
)
from hemotune.trainers.image_classification.params import DEFAULTS
from hemotune.trainers.image_classification.setup import Runtime, Setup, torch_device

log = logging.getLogger(__name__)


def read_weights(weights: Path) -> dict[str, Any]:
    """A hemotune classification ``best.pt`` (model state, architecture, classes, imgsz)."""
    path = Path(weights)
    if not path.is_file():
        raise UsageError(f"weights file not found: {path}")
    state: Any = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not {"model", "model_name", "classes"} <= set(state):
        raise UsageError(f"{path}: not a hemotune image_classification best.pt (model, model_name, classes)")
    return state


def label_map(data_classes: Sequence[str], model_classes: Sequence[str], where: str) -> np.ndarray:
    """Index ``i`` of the data's classes -> the model's index of the class with the same name."""
    index = {c: i for i, c in enumerate(model_classes)}
    unknown = [c for c in data_classes if c not in index]
    if unknown:
        raise UsageError(
            f"{where}: class {unknown[0]!r} is not a class the model was trained on "
            f"({', '.join(model_classes)})"
        )
    return np.array([index[c] for c in data_classes], dtype=np.int64)


def evaluation_setup(resolved: Mapping[str, Any], state: Mapping[str, Any], data: Path) -> Setup:
    """The trial's settings with the architecture, size and masking the weights were trained with."""
    params = {**DEFAULTS, **dict(resolved), "data": str(data)}
    setup = Setup.from_params(params)
    return replace(
        setup,
        model=str(state["model_name"]),
        imgsz=int(state.get("imgsz", setup.imgsz)),
        segmentation=bool(state.get("segmentation", setup.segmentation)),
        pretrained="",  # the weights replace every tensor; nothing else is loaded
    )


def evaluate_classifier(
    weights: Path, data: PreparedData, split: str, resolved: Mapping[str, Any], context: TrialContext
) -> dict[str, Any]:
    """``{"metrics": {<split>/<name>: value}, "classes", "missing_classes", "macro_over", "confusion_matrix", ...}``."""
    meta, splits = load_prepared(Path(data.path))
    if split not in splits:
        raise UsageError(
            f"dataset {data.source} (prepared at {data.path}) has no {split} split; "
            f"it has: {', '.join(splits) or 'none'}"
        )
    state = read_weights(weights)
    classes = list(state["classes"])
    setup = evaluation_setup(resolved, state, Path(data.path))
    y_true = label_map(list(meta["classes"]), classes, str(data.source))[splits[split].labels]
    images = split_tensors(splits[split], setup.imgsz, setup.segmentation)
    rt = Runtime.build(setup, len(classes), torch_device(context.device))
    rt.built.module.load_state_dict(state["model"])
    y_pred, loss = predict(rt, images, torch.from_numpy(y_true))
    present = sorted(set(y_true.tolist()))
    missing = [c for i, c in enumerate(classes) if i not in present]
    if missing:
        log.warning(
            "%s split of %s has no image of class(es) %s: their per-class metrics are left out and the "
            "macro averages are over %s only",
            split,
            data.source,
            ", ".join(missing),
            ", ".join(classes[i] for i in present),
        )
    metrics = classification_metrics(
        y_true,
        y_pred,
        classes,
        positive_class=setup.positive_class or None,
        prefix=f"{split}/",
        over=present if missing else None,
    )
    metrics[f"{split}/loss"] = loss
    details = {
        "split": split,
        "weights": str(weights),
        "data": str(data.source),
        "images": len(y_true),
        "classes": classes,
        "missing_classes": missing,
        "macro_over": [classes[i] for i in present],
        "confusion_matrix": confusion(y_true, y_pred, len(classes)).tolist(),
        "metrics": metrics,
    }
    folder = Path(context.workdir) / "evaluation"
    write_details(folder, details)
    # per test image its label and prediction: ``hemotune evaluate`` resamples the images and
    # recomputes the objective (macro-F1, ...) with ``classification_metrics`` (``subset_metric``)
    per_image = {
        "images": [str(p) for p in splits[split].paths],
        "y_true": y_true,
        "y_pred": np.asarray(y_pred, dtype=np.int64),
        "classes": classes,
        "over": present if missing else list(range(len(classes))),
        "positive_class": setup.positive_class or "",
    }
    details["per_image_file"] = str(write_per_image(folder, split, per_image))
    return details


def write_details(folder: Path, details: Mapping[str, Any]) -> Path:
    """``<split>.json`` and ``<split>/confusion_matrix.{png,json}`` in ``folder``."""
    split = str(details["split"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.json"
    path.write_text(json.dumps(details, indent=2))
    write_confusion_artifacts(
        np.asarray(details["confusion_matrix"]),
        details["classes"],
        folder / split,
        title=f"{split}: {details['images']} images",
        extra={"split": split, "missing_classes": details["missing_classes"]},
    )
    return path
