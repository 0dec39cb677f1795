"""Class weights from training-split counts, and the (focal) cross-entropy they weight.

Schemes (``class_weighting``), for a class with ``n_c`` training images, then
normalised so the weights average 1 over the K classes (``w * K / sum(w)``):

* ``none``: ``w_c = 1``;
* ``inverse_frequency``: ``w_c ∝ 1 / n_c``;
* ``inverse_sqrt``: ``w_c ∝ 1 / sqrt(n_c)``;
* ``effective_number``: ``w_c ∝ (1 - beta) / (1 - beta**n_c)``, the inverse of the
  effective number of samples (Cui et al., "Class-Balanced Loss Based on
  Effective Number of Samples", CVPR 2019); ``beta = 0`` gives equal weights
  and ``beta -> 1`` approaches inverse frequency.

The loss is the focal loss (Lin et al. 2017) with the class weights as alpha::

    loss = sum_i w[y_i] * (1 - p_i)**gamma * CE_i  /  sum_i w[y_i]

where ``CE_i`` is the (label-smoothed) cross-entropy of sample i and ``p_i`` the
predicted probability of its true class. With ``gamma = 0`` and no label
smoothing this is exactly PyTorch's weighted ``cross_entropy`` (the weighted mean
over the batch); with smoothing, a sample's whole smoothed CE is weighted by its
true class (PyTorch instead weights the smoothing term per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

CLASS_WEIGHTINGS = ("none", "inverse_frequency", "inverse_sqrt", "effective_number")


def class_weights(counts: Sequence[int] | np.ndarray, scheme: str, beta: float = 0.999) -> np.ndarray:
    """Per-class weights (mean 1) for training-split ``counts`` under ``scheme``."""
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ValueError("counts must be a non-empty 1-D sequence")
    if (n <= 0).any():
        raise ValueError(f"every class needs at least one training image; counts: {n.astype(int).tolist()}")
    if scheme == "none":
        raw = np.ones_like(n)
    elif scheme == "inverse_frequency":
        raw = 1.0 / n
    elif scheme == "inverse_sqrt":
        raw = 1.0 / np.sqrt(n)
    elif scheme == "effective_number":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"class_weight_beta must be in [0, 1), got {beta}")
        raw = (1.0 - beta) / (1.0 - np.power(beta, n))
    else:
        raise ValueError(f"unknown class_weighting {scheme!r}; allowed: {', '.join(CLASS_WEIGHTINGS)}")
    return np.asarray(raw * n.size / raw.sum())


def sample_weights(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Per-sample weights ``1 / n_{y_i}`` for a class-balanced ``WeightedRandomSampler``."""
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return np.asarray(1.0 / counts[y])


class FocalCrossEntropy:
    """Class-weighted focal cross-entropy with optional label smoothing (see the module docstring)."""

    def __init__(
        self, weight: torch.Tensor | None = None, gamma: float = 0.0, label_smoothing: float = 0.0
    ) -> None:
        self.weight = weight
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> Any:
        import torch.nn.functional as F

        logits = logits.float()
        ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        if self.gamma > 0.0:
            p_true = logits.softmax(dim=1).gather(1, target[:, None]).squeeze(1)
            ce = (1.0 - p_true).clamp(min=0.0).pow(self.gamma) * ce
        if self.weight is None:
            return ce.mean()
        w = self.weight.to(logits.device)[target]
        return (w * ce).sum() / w.sum()
