"""Ultralytics' own rules, mirrored as small pure functions: one rule, one function, one test.

Each docstring quotes the Ultralytics code it mirrors, so a change there shows
up as a failing guard (``guards.py``) and points here.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from hemotune.trainers.yolo_detection.params import LR_SCALING


def learning_rate(
    base_lr: float, effective_batch: int, reference_batch: int, scaling: str = "linear"
) -> float:
    """``lr0`` for ``effective_batch`` images per step; ``base_lr`` is defined at ``reference_batch``.

    The study's recipe, ``lr0 = base_lr * (effective_batch / reference_batch) ** p``
    with ``p`` from ``LR_SCALING`` (Ultralytics itself never scales ``lr0``).
    """
    return float(base_lr) * (effective_batch / reference_batch) ** LR_SCALING[scaling]


def expected_accumulate(accumulate_steps: int, batches_per_epoch: int, epochs: int) -> int:
    """Micro-batches per optimizer step Ultralytics runs after warm-up for ``nbs = batch * accumulate_steps``.

    Ultralytics computes ``max(round(nbs / batch), 1)`` (= ``accumulate_steps``)
    and caps it at the number of micro-batches in the whole run.
    """
    return max(1, min(int(accumulate_steps), int(batches_per_epoch) * int(epochs)))


def accumulation_cap_problem(accumulate_steps: int, batches_per_epoch: int, epochs: int) -> str | None:
    """Why ``accumulate_steps`` cannot run as asked (``None`` when it can).

    A run of ``batches_per_epoch * epochs`` micro-batches in all, fewer than
    ``accumulate_steps``, would have its accumulation capped by Ultralytics
    (``expected_accumulate``) while ``lr0`` stays scaled for the asked images per
    step: hemotune fails such a trial instead of training another configuration.
    """
    total = int(batches_per_epoch) * int(epochs)
    capped = expected_accumulate(accumulate_steps, batches_per_epoch, epochs)
    if capped == int(accumulate_steps):
        return None
    return (
        f"accumulate_steps {accumulate_steps} needs {accumulate_steps} micro-batches per optimizer step, but the "
        f"run has only {total} in all ({batches_per_epoch} per epoch x {epochs} epochs): Ultralytics would "
        f"cap accumulation at {capped} while lr0 stays scaled for {accumulate_steps}; use accumulate_steps <= "
        f"{total}, or more train images or epochs (or a smaller batch)"
    )


def effective_warmup_epochs(warmup_epochs: float, epochs: int) -> float:
    """Ultralytics leaves at least the last epoch out of warm-up: ``min(warmup_epochs, epochs - 1)``."""
    return min(float(warmup_epochs), float(max(epochs - 1, 0)))


def model_problem(model: str) -> str | None:
    """Why ``model`` cannot be used without a download (``None`` when it can).

    Allowed: a ``.pt`` file on disk (fine-tuning), a model ``.yaml`` on disk, or a
    model ``.yaml`` shipped with Ultralytics (built from scratch, e.g. ``yolo11n.yaml``).
    Ultralytics would download any other ``.pt`` name (``attempt_download_asset``).
    """
    path = Path(model).expanduser()
    suffix = path.suffix.lower()
    if "://" in model:
        return (
            f"model {model!r}: URLs are not allowed (hemotune never downloads weights); give a file on disk"
        )
    if suffix == ".pt":
        if not path.is_file():
            return (
                f"model {model!r}: weights file not found on disk ({path.resolve()}); hemotune never "
                "downloads weights: give the path of a .pt file, or a model .yaml (e.g. yolo11n.yaml) "
                "to train from scratch"
            )
        return None
    if suffix not in (".yaml", ".yml"):
        return f"model {model!r}: must be a model .yaml (e.g. yolo11n.yaml) or a .pt weights file on disk"
    if path.is_file() or packaged_model_config(path.name) is not None:
        return None
    return f"model {model!r}: no such model config on disk or in the installed Ultralytics package"


def packaged_model_config(name: str) -> Path | None:
    r"""The installed Ultralytics config of a model yaml name (``yolo11n.yaml`` -> ``yolo11.yaml``).

    Ultralytics' ``yaml_model_load`` drops the scale letter the same way,
    ``re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", path)``; found without importing Ultralytics.
    """
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models"
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", Path(name).stem) + Path(name).suffix
    for candidate in (name, unified):
        found = sorted(models.rglob(candidate))
        if found:
            return found[0]
    return None
