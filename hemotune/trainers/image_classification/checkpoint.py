"""A classification trial's files: the per-epoch checkpoint (resume) and the best epoch's weights (imports torch).

``checkpoint/last.pt`` holds the model, optimizer, scaler and random states, the
best epoch so far (``BestEpoch.state()``) and an identity that a resumed trial
must match. ``best/epoch_NNNN/`` holds the best epoch's ``best.pt`` and its
confusion matrix; only the newest best is kept, and a copy of its weights sits
at ``weights/best.pt`` (the same place as the detection trainer's).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hemotune.errors import TrialConfigurationError
from hemotune.trainers.image_classification.metrics import confusion, write_confusion_artifacts
from hemotune.trainers.image_classification.setup import Runtime, Setup

CHECKPOINT_FILE = "last.pt"


def rng_state() -> dict[str, Any]:
    """Every random generator's state (torch, CUDA, numpy, Python)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``last.pt`` atomically into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"
    torch.save(dict(payload), tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)
    return folder


def load_checkpoint(folder: Path) -> dict[str, Any]:
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise TrialConfigurationError(f"cannot resume: no {CHECKPOINT_FILE} in {folder}")
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state


def checkpoint_identity(setup: Setup, classes: list[str], fingerprint: str) -> dict[str, Any]:
    """What a checkpoint must share with the trial resuming from it."""
    return {
        "model": setup.model,
        "classes": classes,
        "data": fingerprint,
        "epochs": setup.epochs,
        "batch": setup.batch,
        "accumulate_steps": setup.accumulate_steps,
        "imgsz": setup.imgsz,
    }


def write_best(
    workdir: Path,
    epoch: int,
    rt: Runtime,
    classes: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    objective: tuple[str, float],
) -> dict[str, Path]:
    """best.pt and the confusion matrix of the new best epoch (``objective``: its metric and value)."""
    metric, score = objective
    folder = workdir / "best" / f"epoch_{epoch:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "best.pt"
    torch.save(
        {
            "model": rt.built.module.state_dict(),
            "model_name": rt.setup.model,
            "classes": classes,
            "imgsz": rt.setup.imgsz,
            "mean": rt.built.mean,
            "std": rt.built.std,
            "segmentation": rt.setup.segmentation,
            "epoch": epoch,
            "best_metric": metric,
            "score": score,
        },
        weights,
    )
    matrix = confusion(y_true, y_pred, len(classes))
    png, js = write_confusion_artifacts(
        matrix,
        classes,
        folder,
        title=f"val, epoch {epoch}: {metric} = {score:.4f}",
        extra={"epoch": epoch, "best_metric": metric, "score": score},
    )
    return {"weights/best.pt": weights, "confusion_matrix.png": png, "confusion_matrix.json": js}


def publish_best(workdir: Path, epoch: int) -> Path:
    """The best epoch's ``best.pt`` as ``<workdir>/weights/best.pt`` (a hard link, else a copy; atomic).

    Done after the epoch's report: the logged file in ``best/epoch_NNNN/`` is never
    overwritten while it may still be uploading.
    """
    target = workdir / "weights" / "best.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".best.pt.tmp")
    tmp.unlink(missing_ok=True)
    source = workdir / "best" / f"epoch_{epoch:04d}" / "best.pt"
    try:  # a hard link: the same bytes, no copy (the epoch's file is never written again)
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def drop_older_bests(workdir: Path, epoch: int) -> None:
    """Remove the files of earlier best epochs (already reported and logged)."""
    for folder in (workdir / "best").glob("epoch_*"):
        if folder.name != f"epoch_{epoch:04d}":
            shutil.rmtree(folder, ignore_errors=True)
