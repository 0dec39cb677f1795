"""The classification training loop (imported only inside ``train``: it imports torch).

One epoch: seeded shuffling (or class-balanced sampling), optional flips and
90-degree rotations, forward under autocast on CUDA, the class-weighted focal
loss divided by the number of micro-batches in the accumulation window, an
optimizer step every ``accumulate_steps`` micro-batches (and once more for a
shorter window at the end of the epoch), then evaluation on val and one
``report`` with the checkpoint. Randomness is re-seeded from ``(seed, epoch)``
at the start of every epoch, so a run resumed from the checkpoint of epoch e
continues exactly as the uninterrupted run would have (on the same device).
The best epoch (``weights/best.pt``) is the best by the search objective
(``TrialContext.objective``/``mode``), else by ``best_metric``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from hemotune.data.imagefolder import LoadedSplit, load_prepared
from hemotune.errors import TrialConfigurationError, UsageError
from hemotune.trainers.base import Metrics, Report, TrialContext
from hemotune.trainers.image_classification.batches import augment_batch, make_loader, split_tensors
from hemotune.trainers.image_classification.checkpoint import (
    checkpoint_identity,
    drop_older_bests,
    load_checkpoint,
    publish_best,
    restore_rng,
    rng_state,
    save_checkpoint,
    write_best,
)
from hemotune.trainers.image_classification.losses import FocalCrossEntropy, class_weights
from hemotune.trainers.image_classification.metrics import classification_metrics
from hemotune.trainers.image_classification.models import get_spec
from hemotune.trainers.image_classification.setup import (
    Runtime,
    Setup,
    build_optimizer,
    epoch_lr,
    epoch_seed,
    seed_everything,
    torch_device,
)


def train_one_epoch(
    rt: Runtime,
    loader: DataLoader,
    criterion: FocalCrossEntropy,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    aug_generator: torch.Generator | None,
) -> float:
    """One pass over the training split; returns the mean training loss per micro-batch."""
    model = rt.built.module
    model.train()
    k = rt.setup.accumulate_steps
    n = len(loader)
    total, seen = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    for i, (x, y) in enumerate(loader):
        if aug_generator is not None:
            x = augment_batch(x, aug_generator)
        window = min(k, n - (i // k) * k)  # the last window of an epoch may be shorter
        with rt.autocast():
            logits = model(rt.inputs(x))
            loss = criterion(logits, y.to(rt.device, non_blocking=True))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at micro-batch {i + 1}: the run diverged"
            )
        scaler.scale(loss / window).backward()
        if (i + 1) % k == 0 or i + 1 == n:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        total += float(loss.detach())
        seen += 1
    return total / max(seen, 1)


@torch.inference_mode()
def evaluate(rt: Runtime, images: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, float]:
    """Predictions on a split and its mean (unweighted) cross-entropy."""
    model = rt.built.module
    model.eval()
    preds, loss_sum = [], 0.0
    size = max(rt.setup.batch, 64)
    for lo in range(0, len(labels), size):
        x, y = images[lo : lo + size], labels[lo : lo + size].to(rt.device)
        with rt.autocast():
            logits = model(rt.inputs(x)).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        preds.append(logits.argmax(dim=1).cpu().numpy())
    return np.concatenate(preds), loss_sum / max(len(labels), 1)


def check_trial_data(setup: Setup, meta: Mapping[str, Any], splits: Mapping[str, LoadedSplit]) -> None:
    """The prepared dataset can feed this trial: large enough images, the model's minimum size, a val split."""
    if setup.imgsz > int(meta["cache_imgsz"]):
        raise UsageError(
            f"imgsz {setup.imgsz} > cache_imgsz {meta['cache_imgsz']} of {setup.data}: "
            f"prepare the dataset with a larger cache_imgsz"
        )
    min_imgsz = get_spec(setup.model).min_imgsz
    if setup.imgsz < min_imgsz:
        raise TrialConfigurationError(f"model {setup.model} needs imgsz >= {min_imgsz}")
    if "val" not in splits:
        raise UsageError(f"{setup.data}: the prepared dataset has no validation split")


def make_criterion(setup: Setup, weights: np.ndarray, device: torch.device) -> FocalCrossEntropy:
    """The training loss: focal cross-entropy, class-weighted unless ``class_weighting`` is ``none``."""
    weight = (
        None if setup.class_weighting == "none" else torch.tensor(weights, dtype=torch.float32, device=device)
    )
    return FocalCrossEntropy(weight, gamma=setup.focal_gamma, label_smoothing=setup.label_smoothing)


class ClassificationTrial:
    """One trial across its epochs: the runtime, optimizer, loss, tensors and best epoch it carries."""

    def __init__(self, params: Mapping[str, Any], report: Report, context: TrialContext) -> None:
        self.setup = setup = Setup.from_params(params)
        self.report, self.context, self.workdir = report, context, Path(context.workdir)
        meta, splits = load_prepared(setup.data)
        self.classes: list[str] = list(meta["classes"])
        check_trial_data(setup, meta, splits)
        device = torch_device(context.device)
        seed_everything(setup.seed)
        self.rt = Runtime.build(setup, len(self.classes), device)
        self.train_x = split_tensors(splits["train"], setup.imgsz, setup.segmentation)
        self.train_y = torch.from_numpy(splits["train"].labels)
        self.val_x = split_tensors(splits["val"], setup.imgsz, setup.segmentation)
        self.val_y = torch.from_numpy(splits["val"].labels)
        counts = np.bincount(self.train_y.numpy(), minlength=len(self.classes))
        self.class_weights = class_weights(counts, setup.class_weighting, setup.class_weight_beta)
        self.criterion = make_criterion(setup, self.class_weights, device)
        self.optimizer = build_optimizer(self.rt.built.module, setup)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.rt.use_amp)
        self.identity = checkpoint_identity(setup, self.classes, str(meta.get("fingerprint", "")))
        self.best = context.best_epoch(setup.best_metric, setup.best_mode)

    def run(self) -> Metrics:
        """Train (or resume) to ``epochs``; return ``best/<metric>`` of the best epoch and ``best_epoch``."""
        start = self._resume(Path(self.context.resume_from)) if self.context.resume_from is not None else 0
        for epoch in range(start + 1, self.setup.epochs + 1):
            self._run_epoch(epoch)
        return {**self.best.summary(), "best_epoch": float(self.best.epoch)}

    def _resume(self, folder: Path) -> int:
        """Restore the state of a checkpoint written for this trial; the epoch it was taken after."""
        state = load_checkpoint(folder)
        if state["identity"] != self.identity:
            raise TrialConfigurationError(
                f"checkpoint in {folder} is for {state['identity']}, this trial is {self.identity}"
            )
        self.rt.built.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        self.best.restore(state)
        return int(state["epoch"])

    def _run_epoch(self, epoch: int) -> None:
        started = time.perf_counter()
        metrics, y_true, y_pred = self._train_and_evaluate(epoch)
        improved = self.best.update(epoch, metrics)
        artifacts: dict[str, Path] = {}
        if improved:
            objective = (self.best.metric, self.best.value)
            artifacts = write_best(self.workdir, epoch, self.rt, self.classes, y_true, y_pred, objective)
        payload = {
            "identity": self.identity,
            "epoch": epoch,
            "model": self.rt.built.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            **self.best.state(),
            "class_weights": self.class_weights.tolist(),
            "seconds": time.perf_counter() - started,
        }
        checkpoint = save_checkpoint(self.workdir / "checkpoint", payload)
        self.report(metrics, checkpoint=checkpoint, artifacts=artifacts)
        if improved:
            publish_best(self.workdir, epoch)
            drop_older_bests(self.workdir, epoch)

    def _train_and_evaluate(self, epoch: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """One epoch of training under its own seeds, then the val metrics (and labels, predictions)."""
        setup = self.setup
        seed = epoch_seed(setup.seed, epoch)
        seed_everything(seed)
        loader_generator = torch.Generator().manual_seed(seed)
        augment_generator = torch.Generator().manual_seed(seed + 1) if setup.augment else None
        pin = self.rt.device.type == "cuda"
        loader = make_loader(
            self.train_x,
            self.train_y,
            setup,
            len(self.classes),
            loader_generator,
            pin,
        )
        lr = epoch_lr(setup, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        train_loss = train_one_epoch(
            self.rt, loader, self.criterion, self.optimizer, self.scaler, augment_generator
        )
        y_pred, val_loss = evaluate(self.rt, self.val_x, self.val_y)
        y_true = self.val_y.numpy()
        metrics: dict[str, float] = {"epoch": epoch, "train/loss": train_loss, "val/loss": val_loss, "lr": lr}
        positive = setup.positive_class or None
        metrics.update(classification_metrics(y_true, y_pred, self.classes, positive_class=positive))
        return metrics, y_true, y_pred


def train(params: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
    """Train one resolved configuration; report every epoch; return ``best/<metric>`` and ``best_epoch``."""
    return ClassificationTrial(params, report, context).run()
