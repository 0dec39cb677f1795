"""The classification training loop (imported only inside ``fit``: it imports torch).

One epoch: seeded shuffling (or class-balanced sampling), optional flips and
90-degree rotations, forward under autocast on CUDA, the class-weighted focal
loss divided by the number of micro-batches in the accumulation window, an
optimizer step every ``accumulate_steps`` micro-batches (and once more for a
shorter window at the end of the epoch), then evaluation on val and one
``report`` with the checkpoint. Randomness is re-seeded from ``(seed, epoch)``
at the start of every epoch, so a run resumed from the checkpoint of epoch e
continues exactly as the uninterrupted run would have (on the same device).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset, WeightedRandomSampler

from hemotune.data.imagefolder import LoadedSplit, load_prepared
from hemotune.errors import TrialConfigurationError, UsageError
from hemotune.trainers.base import Metrics, Report, TrialContext
from hemotune.trainers.cls_losses import FocalCrossEntropy, class_weights, sample_weights
from hemotune.trainers.cls_metrics import classification_metrics, confusion, write_confusion_artifacts
from hemotune.trainers.cls_models import BuiltModel, build_model

CHECKPOINT_FILE = "last.pt"
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
    def maximize(self) -> bool:
        return not self.best_metric.endswith("loss")


# ----------------------------------------------------------------------------- data


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


def split_tensors(split: LoadedSplit, imgsz: int, segmentation: bool, chunk: int = 256) -> torch.Tensor:
    """A split's images as a uint8 (N, 3, imgsz, imgsz) tensor, masked and resized once per trial."""
    n = len(split.labels)
    out = torch.empty((n, 3, imgsz, imgsz), dtype=torch.uint8)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        arr = np.array(split.images[lo:hi])  # a writable in-memory copy of the memory-mapped rows
        if segmentation:
            arr *= np.asarray(split.masks[lo:hi])[..., None]
        x = torch.from_numpy(arr).permute(0, 3, 1, 2)
        if x.shape[-1] != imgsz:
            x = F.interpolate(
                x.float(), size=(imgsz, imgsz), mode="bilinear", antialias=True, align_corners=False
            )
            x = x.round().clamp(0, 255).to(torch.uint8)
        out[lo:hi] = x
    return out


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips and 90-degree rotations per image (cells have no orientation)."""
    n = x.shape[0]
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(0, 4, (n,), generator=generator)
    x = x.clone()
    x[flip_h] = x[flip_h].flip(3)
    x[flip_v] = x[flip_v].flip(2)
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            x[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
    return x


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    setup: Setup,
    num_classes: int,
    generator: torch.Generator,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    dataset = TensorDataset(images, labels)
    sampler: RandomSampler | WeightedRandomSampler
    if setup.balanced_sampling:
        weights = sample_weights(labels.numpy(), num_classes).tolist()
        sampler = WeightedRandomSampler(
            weights, num_samples=len(labels), replacement=True, generator=generator
        )
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=setup.batch,
        sampler=sampler,
        drop_last=len(labels) > setup.batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
    )


# ----------------------------------------------------------------------------- optimisation


def build_optimizer(model: torch.nn.Module, setup: Setup) -> torch.optim.Optimizer:
    """The optimizer; no weight decay on biases and normalisation parameters (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": setup.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if setup.optimizer == "SGD":
        return torch.optim.SGD(groups, lr=setup.lr, momentum=setup.momentum)
    if setup.optimizer == "Adam":
        return torch.optim.Adam(groups, lr=setup.lr, betas=(setup.momentum, 0.999))
    if setup.optimizer == "AdamW":
        return torch.optim.AdamW(groups, lr=setup.lr, betas=(setup.momentum, 0.999))
    raise UsageError(f"unknown optimizer {setup.optimizer!r}; allowed: SGD, Adam, AdamW")


def epoch_lr(setup: Setup, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``: constant, or cosine from lr down to lr * FINAL_LR_FACTOR."""
    if setup.lr_schedule == "constant" or setup.epochs <= 1:
        return setup.lr
    progress = (epoch - 1) / (setup.epochs - 1)
    return setup.lr * (FINAL_LR_FACTOR + (1 - FINAL_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Runtime:
    """Everything the epochs share."""

    setup: Setup
    built: BuiltModel
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor
    use_amp: bool

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        return (x - self.mean) / self.std

    def autocast(self) -> Any:
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp)


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


# ----------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: Mapping[str, Any]) -> None:
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


def _identity(setup: Setup, classes: list[str], fingerprint: str) -> dict[str, Any]:
    return {
        "model": setup.model,
        "classes": classes,
        "data": fingerprint,
        "epochs": setup.epochs,
        "batch": setup.batch,
        "accumulate_steps": setup.accumulate_steps,
        "imgsz": setup.imgsz,
    }


# ----------------------------------------------------------------------------- the trial


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrialConfigurationError(f"device {name!r} was assigned but CUDA is not available here")
    return device


def train(params: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
    """Train one resolved configuration; report every epoch; return ``best/<metric>`` and ``best_epoch``."""
    setup = Setup.from_params(params)
    meta, splits = load_prepared(setup.data)
    classes: list[str] = list(meta["classes"])
    if setup.imgsz > int(meta["cache_imgsz"]):
        raise UsageError(
            f"imgsz {setup.imgsz} > cache_imgsz {meta['cache_imgsz']} of {setup.data}: "
            f"prepare the dataset with a larger cache_imgsz"
        )
    if setup.imgsz < build_spec_min(setup.model):
        raise TrialConfigurationError(f"model {setup.model} needs imgsz >= {build_spec_min(setup.model)}")
    if "val" not in splits:
        raise UsageError(f"{setup.data}: the prepared dataset has no validation split")
    positive = setup.positive_class or None
    device = _device(context.device)
    seed_everything(setup.seed)

    built = build_model(setup.model, len(classes), setup.pretrained)
    built.module.to(device)
    rt = Runtime(
        setup,
        built,
        device,
        mean=torch.tensor(built.mean, device=device).view(1, 3, 1, 1),
        std=torch.tensor(built.std, device=device).view(1, 3, 1, 1),
        use_amp=setup.amp and device.type == "cuda",
    )
    train_x = split_tensors(splits["train"], setup.imgsz, setup.segmentation)
    train_y = torch.from_numpy(splits["train"].labels)
    val_x = split_tensors(splits["val"], setup.imgsz, setup.segmentation)
    val_y = torch.from_numpy(splits["val"].labels)
    counts = np.bincount(train_y.numpy(), minlength=len(classes))
    weights = class_weights(counts, setup.class_weighting, setup.class_weight_beta)
    criterion = FocalCrossEntropy(
        None
        if setup.class_weighting == "none"
        else torch.tensor(weights, dtype=torch.float32, device=device),
        gamma=setup.focal_gamma,
        label_smoothing=setup.label_smoothing,
    )
    optimizer = build_optimizer(built.module, setup)
    scaler = torch.amp.GradScaler(device.type, enabled=rt.use_amp)
    identity = _identity(setup, classes, str(meta.get("fingerprint", "")))

    start, best_score, best_epoch, best_metrics = 0, -math.inf if setup.maximize else math.inf, 0, {}
    if context.resume_from is not None:
        state = load_checkpoint(Path(context.resume_from))
        if state["identity"] != identity:
            raise TrialConfigurationError(
                f"checkpoint in {context.resume_from} is for {state['identity']}, this trial is {identity}"
            )
        built.module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"])
        start, best_score = int(state["epoch"]), float(state["best_score"])
        best_epoch, best_metrics = int(state["best_epoch"]), dict(state["best_metrics"])

    workdir = Path(context.workdir)
    pin = device.type == "cuda"
    for epoch in range(start + 1, setup.epochs + 1):
        started = time.perf_counter()
        seed = epoch_seed(setup.seed, epoch)
        seed_everything(seed)
        loader_gen = torch.Generator().manual_seed(seed)
        aug_gen = torch.Generator().manual_seed(seed + 1) if setup.augment else None
        loader = make_loader(train_x, train_y, setup, len(classes), loader_gen, context.num_workers, pin)
        lr = epoch_lr(setup, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss = train_one_epoch(rt, loader, criterion, optimizer, scaler, aug_gen)
        y_pred, val_loss = evaluate(rt, val_x, val_y)
        y_true = val_y.numpy()
        metrics: dict[str, float] = {"epoch": epoch, "train/loss": train_loss, "val/loss": val_loss, "lr": lr}
        metrics.update(classification_metrics(y_true, y_pred, classes, positive_class=positive))
        if setup.best_metric not in metrics:
            raise UsageError(f"best_metric {setup.best_metric!r} is not among the reported metrics")
        score = metrics[setup.best_metric]
        improved = score > best_score if setup.maximize else score < best_score
        artifacts: dict[str, Path] = {}
        if improved:
            best_score, best_epoch, best_metrics = score, epoch, dict(metrics)
            artifacts = _write_best(workdir, epoch, rt, classes, y_true, y_pred, score)
        ckpt = save_checkpoint(
            workdir / "checkpoint",
            {
                "identity": identity,
                "epoch": epoch,
                "model": built.module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_state(),
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_metrics": best_metrics,
                "class_weights": weights.tolist(),
                "seconds": time.perf_counter() - started,
            },
        )
        report(metrics, checkpoint=ckpt, artifacts=artifacts)
        if improved:
            _drop_older_bests(workdir, epoch)
    summary: Metrics = {f"best/{k}": float(v) for k, v in best_metrics.items() if k != "epoch"}
    summary["best_epoch"] = float(best_epoch)
    return summary


def build_spec_min(model: str) -> int:
    from hemotune.trainers.cls_models import get_spec

    return get_spec(model).min_imgsz


def _write_best(
    workdir: Path,
    epoch: int,
    rt: Runtime,
    classes: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    score: float,
) -> dict[str, Path]:
    """best.pt and the confusion matrix of the new best epoch, in a folder of their own."""
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
            "best_metric": rt.setup.best_metric,
            "score": score,
        },
        weights,
    )
    matrix = confusion(y_true, y_pred, len(classes))
    png, js = write_confusion_artifacts(
        matrix,
        classes,
        folder,
        title=f"val, epoch {epoch}: {rt.setup.best_metric} = {score:.4f}",
        extra={"epoch": epoch, "best_metric": rt.setup.best_metric, "score": score},
    )
    return {"weights/best.pt": weights, "confusion_matrix.png": png, "confusion_matrix.json": js}


def _drop_older_bests(workdir: Path, epoch: int) -> None:
    """Remove the files of earlier best epochs (already reported and logged)."""
    for folder in (workdir / "best").glob("epoch_*"):
        if folder.name != f"epoch_{epoch:04d}":
            shutil.rmtree(folder, ignore_errors=True)
