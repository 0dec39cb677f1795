"""Class-weight formulas against hand-computed values, and the focal loss against PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hemotune.trainers.image_classification.losses import FocalCrossEntropy, class_weights, sample_weights

COUNTS = [10, 20, 70]


def test_none_is_all_ones() -> None:
    assert class_weights(COUNTS, "none").tolist() == [1.0, 1.0, 1.0]


def test_inverse_frequency_by_hand() -> None:
    # 1/10 : 1/20 : 1/70 = 14 : 7 : 2 (sum 23); mean-1 normalisation multiplies by 3/23.
    expected = [42 / 23, 21 / 23, 6 / 23]
    assert class_weights(COUNTS, "inverse_frequency") == pytest.approx(expected)


def test_inverse_sqrt_by_hand() -> None:
    raw = [1 / 10**0.5, 1 / 20**0.5, 1 / 70**0.5]  # 0.316228, 0.223607, 0.119523
    expected = [3 * r / sum(raw) for r in raw]
    assert class_weights(COUNTS, "inverse_sqrt") == pytest.approx(expected)
    assert class_weights(COUNTS, "inverse_sqrt") == pytest.approx([1.438800, 1.017385, 0.543815], abs=1e-6)


def test_effective_number_by_hand() -> None:
    # Cui et al. 2019: (1 - beta) / (1 - beta**n). beta = 0.9:
    # n=10: 0.1 / (1 - 0.348678) = 0.153534; n=20: 0.1 / (1 - 0.121577) = 0.113840;
    # n=70: 0.1 / (1 - 0.000626) = 0.100063; sum 0.367437, times 3 / sum:
    assert class_weights(COUNTS, "effective_number", beta=0.9) == pytest.approx(
        [1.253554, 0.929468, 0.816978], abs=1e-6
    )
    # beta = 0 gives equal weights; beta -> 1 approaches inverse frequency.
    assert class_weights(COUNTS, "effective_number", beta=0.0) == pytest.approx([1, 1, 1])
    assert class_weights(COUNTS, "effective_number", beta=0.999999) == pytest.approx(
        class_weights(COUNTS, "inverse_frequency"), rel=1e-3
    )


def test_weights_average_one_and_bad_input() -> None:
    for scheme in ("inverse_frequency", "inverse_sqrt", "effective_number"):
        assert class_weights(COUNTS, scheme).mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one training image"):
        class_weights([5, 0], "inverse_frequency")
    with pytest.raises(ValueError, match="unknown class_weighting"):
        class_weights(COUNTS, "balanced")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        class_weights(COUNTS, "effective_number", beta=1.0)


def test_sample_weights_balance_classes() -> None:
    labels = np.array([0] * 10 + [1] * 20 + [2] * 70)
    w = sample_weights(labels, 3)
    per_class = [w[labels == c].sum() for c in range(3)]
    assert per_class == pytest.approx([1.0, 1.0, 1.0])


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, generator=g), torch.randint(0, 3, (16,), generator=g)


def test_gamma_zero_is_weighted_cross_entropy() -> None:
    logits, target = _batch()
    weight = torch.tensor(class_weights(COUNTS, "inverse_frequency"), dtype=torch.float32)
    ours = FocalCrossEntropy(weight, gamma=0.0)(logits, target)
    assert float(ours) == pytest.approx(float(F.cross_entropy(logits, target, weight=weight)), rel=1e-6)
    plain = FocalCrossEntropy(None, gamma=0.0, label_smoothing=0.1)(logits, target)
    assert float(plain) == pytest.approx(
        float(F.cross_entropy(logits, target, label_smoothing=0.1)), rel=1e-6
    )


def test_focal_down_weights_easy_examples() -> None:
    logits, target = _batch()
    gamma = 2.0
    ours = FocalCrossEntropy(None, gamma=gamma)(logits, target)
    ce = F.cross_entropy(logits, target, reduction="none")
    p = torch.exp(-ce)
    assert float(ours) == pytest.approx(float(((1 - p) ** gamma * ce).mean()), rel=1e-6)
    assert float(ours) < float(ce.mean())
