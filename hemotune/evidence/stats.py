"""The statistics behind "is it really better?": intervals over seeds, paired differences, bootstraps.

Every interval here is a 95% interval unless told otherwise. Over seeds (a handful
of numbers) the interval of a mean is Student's t (``scipy.stats.t``): with 2-5
seeds a normal interval would be far too narrow. A comparison with the baseline is
*paired*: every configuration runs with the same seeds, and the difference is taken
seed by seed, so the seed-to-seed noise common to both cancels. Bootstraps use
``scipy.stats.bootstrap`` (percentile method, seeded: the same numbers give the same
interval). Nothing here knows about Ray, MLflow or trainers: plain numbers in and out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
#: Resamples of every bootstrap; the percentile interval is stable to about 1e-3 at this count.
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A mean (or other point value) with its interval; ``nan`` bounds when there is none (n < 2)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    method: str

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``nan`` becomes ``null``."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean, sample standard deviation (ddof 1) and Student's t interval of ``values``.

    All values equal (sd 0) gives the zero-width interval at the mean; one value gives no interval.
    """
    from scipy import stats

    data = np.asarray(values, dtype=float)
    n = int(data.size)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = float(data.mean())
    if n < 2:
        return Estimate(n, mean, math.nan, math.nan, math.nan, "t")
    if data.min() == data.max():  # (np.std of equal floats can be 1e-17, not 0)
        value = float(data[0])
        return Estimate(n, value, 0.0, value, value, "t")
    sd = float(data.std(ddof=1))
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return Estimate(n, mean, sd, float(low), float(high), "t")


def paired_seeds(candidate: Mapping[int, float], baseline: Mapping[int, float]) -> list[int]:
    """The seeds both sides ran, in order: the pairs of a paired comparison."""
    return sorted(set(candidate) & set(baseline))


def paired_difference(
    candidate: Mapping[int, float], baseline: Mapping[int, float], confidence: float = CONFIDENCE
) -> Estimate:
    """Mean of ``candidate[seed] - baseline[seed]`` over the common seeds, with its t interval."""
    seeds = paired_seeds(candidate, baseline)
    if not seeds:
        raise ValueError("the two sides share no seed: nothing to pair")
    return t_interval([candidate[s] - baseline[s] for s in seeds], confidence)


def bootstrap_mean(
    values: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """The mean of ``values`` with a percentile bootstrap interval (resampling the values)."""
    data = np.asarray(values, dtype=float)
    return _bootstrap((data,), lambda x, axis: np.mean(x, axis=axis), confidence, resamples, seed)


def paired_bootstrap(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """Mean of ``candidate - baseline`` over paired items (test images), with a bootstrap interval.

    The items are resampled together (``paired=True``): an image that is hard for one
    model is hard for the other, and the interval reflects only their disagreement.
    """
    a, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")

    def mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    return _bootstrap((a, b), mean_difference, confidence, resamples, seed, paired=True)


#: Resamples of a bootstrap whose statistic is recomputed from scratch on each resample (mAP or
#: macro-F1 over test images: one Python call each, not vectorised). 1,000 is the usual minimum for
#: a percentile interval; one Ultralytics ``ap_per_class`` on 72 images x 300 predictions takes
#: about 20 ms on one core, so a detection comparison costs about 2 x 1,000 x 20 ms = 40 s.
RECOMPUTED_RESAMPLES = 1_000


def paired_bootstrap_statistic(
    n: int,
    statistic: Callable[[np.ndarray], float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RECOMPUTED_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """``statistic(indices)`` over all ``n`` items, with a percentile bootstrap over resampled indices.

    For a statistic that is not a mean of per-item values (mAP over test images): each
    resample draws ``n`` item indices with replacement and ``statistic`` recomputes the value
    from those items. A paired comparison passes ``statistic(idx) = a(idx) - b(idx)``: both
    sides see the same items. ``sd`` is the bootstrap standard error.
    """
    from scipy import stats

    if n < 1:
        raise ValueError("no items to bootstrap")
    point = float(statistic(np.arange(n)))
    if n < 2:
        return Estimate(n, point, math.nan, math.nan, math.nan, "bootstrap")
    result = stats.bootstrap(
        (np.arange(n),),
        lambda idx: statistic(np.asarray(idx, dtype=np.int64)),
        vectorized=False,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(
        n, point, float(result.standard_error), float(interval.low), float(interval.high), "bootstrap"
    )


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    confidence: float,
    resamples: int,
    seed: int,
    *,
    paired: bool = False,
) -> Estimate:
    """``scipy.stats.bootstrap`` (percentile, vectorised, seeded) as an ``Estimate``."""
    from scipy import stats

    n = int(data[0].size)
    if n == 0:
        raise ValueError("no values to bootstrap")
    point = float(statistic(*data, axis=-1))
    spread = data[0] - data[1] if paired else data[0]
    sd = float(np.std(spread, ddof=1)) if n > 1 else math.nan
    if n < 2:
        return Estimate(n, point, sd, math.nan, math.nan, "bootstrap")
    result = stats.bootstrap(
        data,
        statistic,
        paired=paired,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(n, point, sd, float(interval.low), float(interval.high), "bootstrap")


def signed(value: float, digits: int = 3) -> str:
    """``+0.031`` / ``-0.008``: a difference always shows its sign."""
    return f"{value:+.{digits}f}"


def ci_text(estimate: Estimate, digits: int = 3, label: str = "95% CI") -> str:
    """``95% CI +0.012 to +0.050`` (or a plain note when there is no interval)."""
    if not estimate.has_interval:
        return f"no {label}: {estimate.n} value(s)"
    return f"{label} {signed(estimate.low, digits)} to {signed(estimate.high, digits)}"


def verdict(difference: Estimate, mode: str, against: str = "the baseline", digits: int = 3) -> str:
    """The plain reading of a difference (candidate minus ``against``) and its interval.

    ``better than the baseline: +0.031 (95% CI +0.012 to +0.050)`` when the whole interval
    lies on the good side (above zero for ``mode`` max, below for min), ``worse than ...``
    when it lies on the bad side, else ``not distinguishable from the baseline (95% CI ...)``.
    """
    if not difference.has_interval:
        return (
            f"cannot be compared with {against}: {signed(difference.mean, digits)} "
            f"from {difference.n} pair(s), too few for an interval"
        )
    sign = 1.0 if mode == "max" else -1.0
    if sign * difference.low > 0 and sign * difference.high > 0:
        word = "better than"
    elif sign * difference.low < 0 and sign * difference.high < 0:
        word = "worse than"
    else:
        return f"not distinguishable from {against} ({ci_text(difference, digits)})"
    return f"{word} {against}: {signed(difference.mean, digits)} ({ci_text(difference, digits)})"


def identical_seed_pairs(per_seed: Mapping[int, Mapping[str, float]]) -> list[tuple[int, int]]:
    """Pairs of different seeds whose metrics are all exactly equal (seeding that does nothing).

    Only the keys both seeds report are compared; seeds with no metrics are skipped.
    """
    seeds = sorted(per_seed)
    pairs = []
    for i, first in enumerate(seeds):
        for second in seeds[i + 1 :]:
            shared = set(per_seed[first]) & set(per_seed[second])
            if shared and all(per_seed[first][k] == per_seed[second][k] for k in shared):
                pairs.append((first, second))
    return pairs
