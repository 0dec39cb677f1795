"""A trial's images as tensors, their augmentation, and the seeded (or class-balanced) loader (imports torch)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset, WeightedRandomSampler

from hemotune.data.imagefolder import LoadedSplit
from hemotune.trainers.image_classification.losses import sample_weights
from hemotune.trainers.image_classification.setup import Setup


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
    pin_memory: bool,
) -> DataLoader:
    """Shuffled (or class-balanced, with replacement) micro-batches of ``setup.batch``, seeded by ``generator``.

    No loader worker processes: the images are already decoded uint8 tensors in memory and
    augmentation runs on whole batches in the training loop, so a worker would only index and
    collate, through a queue, what the main process does faster (measured: a 1-worker loader made
    a 6-epoch resnet18 trial on 2 cores 8% slower, benchmarks/overhead). The batches are the same.
    """
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
        num_workers=0,
        pin_memory=pin_memory,
        generator=generator,
    )
