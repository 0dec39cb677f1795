"""One classification trial's typed settings and the objects its epochs share (imports torch).

``Setup`` is the resolved parameter set, typed; ``Runtime`` the model on its
device with its input normalisation; plus the optimizer (from the one table in
``params.OPTIMIZERS``), the learning-rate schedule and the seeding rules that
make a resumed run continue exactly as the uninterrupted one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hemotune.errors import TrialConfigurationError, UsageError
from hemotune.trainers.image_classification.models import BuiltModel, build_model
from hemotune.trainers.image_classification.params import OPTIMIZERS, default_mode

FINAL_LR_FACTOR = 0.01  # cosine schedule ends at lr * FINAL_LR_FACTOR


@dataclass(frozen=True)
class Setup:
    """The resolved parameters of one trial, typed."""

    model: str
    pretrained: str
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    batch: int
    accumulate_steps: int
    imgsz: int
    augment: bool
    class_weighting: str
    class_weight_beta: float
    focal_gamma: float
    label_smoothing: float
    balanced_sampling: bool
    segmentation: bool
    lr_schedule: str
    amp: bool
    best_metric: str
    positive_class: str
    epochs: int
    seed: int
    data: Path

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> Setup:
        if not p.get("data"):
            raise UsageError("params need 'data': the prepared dataset folder (from prepare_data)")
        return cls(
            model=str(p["model"]),
            pretrained=str(p.get("pretrained") or ""),
            optimizer=str(p["optimizer"]),
            lr=float(p["lr"]),
            momentum=float(p["momentum"]),
            weight_decay=float(p["weight_decay"]),
            batch=int(p["batch"]),
            accumulate_steps=int(p["accumulate_steps"]),
            imgsz=int(p["imgsz"]),
            augment=bool(p["augment"]),
            class_weighting=str(p["class_weighting"]),
            class_weight_beta=float(p["class_weight_beta"]),
            focal_gamma=float(p["focal_gamma"]),
            label_smoothing=float(p["label_smoothing"]),
            balanced_sampling=bool(p["balanced_sampling"]),
            segmentation=bool(p["segmentation"]),
            lr_schedule=str(p["lr_schedule"]),
            amp=bool(p["amp"]),
            best_metric=str(p["best_metric"]),
            positive_class=str(p.get("positive_class") or ""),
            epochs=int(p["epochs"]),
            seed=int(p["seed"]),
            data=Path(str(p["data"])),
        )

    @property
    def best_mode(self) -> str:
        """``best_metric``'s direction (used when the search names no objective)."""
        return default_mode(self.best_metric)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of 1-based ``epoch``: a function of the trial seed and the epoch only (so resume is exact)."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


def build_optimizer(model: torch.nn.Module, setup: Setup) -> torch.optim.Optimizer:
    """The optimizer; no weight decay on biases and normalisation parameters (1-D tensors)."""
    if setup.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {setup.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    class_name, momentum_as = OPTIMIZERS[setup.optimizer]
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": setup.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    momentum: dict[str, Any] = (
        {"momentum": setup.momentum} if momentum_as == "momentum" else {"betas": (setup.momentum, 0.999)}
    )
    optimizer: torch.optim.Optimizer = getattr(torch.optim, class_name)(groups, lr=setup.lr, **momentum)
    return optimizer


def epoch_lr(setup: Setup, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``: constant, or cosine from lr down to lr * FINAL_LR_FACTOR."""
    if setup.lr_schedule == "constant" or setup.epochs <= 1:
        return setup.lr
    progress = (epoch - 1) / (setup.epochs - 1)
    return setup.lr * (FINAL_LR_FACTOR + (1 - FINAL_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * progress)))


def torch_device(name: str) -> torch.device:
    """The trial's device; a CUDA device where CUDA is missing fails the trial."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrialConfigurationError(f"device {name!r} was assigned but CUDA is not available here")
    return device


@dataclass
class Runtime:
    """Everything the epochs share."""

    setup: Setup
    built: BuiltModel
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor
    use_amp: bool

    @classmethod
    def build(cls, setup: Setup, num_classes: int, device: torch.device) -> Runtime:
        """The model built (and moved to ``device``) with its normalisation as tensors."""
        built = build_model(setup.model, num_classes, setup.pretrained)
        built.module.to(device)
        return cls(
            setup,
            built,
            device,
            mean=torch.tensor(built.mean, device=device).view(1, 3, 1, 1),
            std=torch.tensor(built.std, device=device).view(1, 3, 1, 1),
            use_amp=setup.amp and device.type == "cuda",
        )

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        return (x - self.mean) / self.std

    def autocast(self) -> Any:
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp)
