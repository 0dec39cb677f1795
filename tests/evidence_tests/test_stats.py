"""The statistics of ``hemotune evaluate`` and ablations, against hand computations on fixed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hemotune.evidence import (
    SeedResult,
    analyse_ablation,
    analyse_evaluation,
    bootstrap_mean,
    evaluation_markdown,
    identical_seed_pairs,
    paired_bootstrap,
    paired_difference,
    t_interval,
    verdict,
)
from hemotune.evidence.stats import Estimate


def test_t_interval_matches_hand_computation() -> None:
    values = [0.70, 0.74, 0.71, 0.77, 0.73]
    mean = sum(values) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)  # t quantile 2.776 for 4 degrees of freedom
    est = t_interval(values)
    assert est.n == 5 and est.mean == pytest.approx(0.73)
    assert est.sd == pytest.approx(sd) and sd == pytest.approx(0.0273861, abs=1e-6)
    assert (est.low, est.high) == pytest.approx((mean - half, mean + half))
    assert half == pytest.approx(2.7764451 * 0.0273861 / math.sqrt(5), rel=1e-5)


def test_t_interval_edge_cases() -> None:
    one = t_interval([0.5])
    assert one.mean == 0.5 and not one.has_interval and one.as_dict()["low"] is None
    flat = t_interval([0.4, 0.4, 0.4])
    assert (flat.sd, flat.low, flat.high) == (0.0, 0.4, 0.4)
    with pytest.raises(ValueError):
        t_interval([])


def test_paired_difference_pairs_by_seed() -> None:
    candidate = {0: 0.80, 1: 0.75, 2: 0.79, 7: 0.5}  # seed 7 has no partner: left out
    baseline = {0: 0.77, 1: 0.74, 2: 0.74, 3: 0.9}
    diffs = [0.03, 0.01, 0.05]
    est = paired_difference(candidate, baseline)
    half = stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / math.sqrt(3)
    assert est.n == 3 and est.mean == pytest.approx(0.03)
    assert (est.low, est.high) == pytest.approx((0.03 - half, 0.03 + half))
    # the paired interval is far narrower than the two unpaired ones: the seed noise cancels
    assert est.high - est.low < t_interval([0.80, 0.75, 0.79]).high - t_interval([0.80, 0.75, 0.79]).low


def test_verdicts_read_plainly() -> None:
    better = Estimate(5, 0.031, 0.01, 0.012, 0.050, "t")
    unclear = Estimate(5, 0.006, 0.01, -0.008, 0.020, "t")
    worse = Estimate(5, -0.031, 0.01, -0.050, -0.012, "t")
    assert verdict(better, "max") == "better than the baseline: +0.031 (95% CI +0.012 to +0.050)"
    assert verdict(unclear, "max") == "not distinguishable from the baseline (95% CI -0.008 to +0.020)"
    assert verdict(worse, "max") == "worse than the baseline: -0.031 (95% CI -0.050 to -0.012)"
    assert verdict(worse, "min").startswith("better than the baseline: -0.031")  # a loss went down
    assert verdict(Estimate(1, 0.02, math.nan, math.nan, math.nan, "t"), "max").startswith(
        "cannot be compared"
    )


def test_paired_bootstrap_over_images_matches_numpy_resampling() -> None:
    rng = np.random.default_rng(3)
    baseline = (rng.random(200) < 0.7).astype(float)
    candidate = baseline.copy()
    candidate[:20] = 1.0  # 20 images fixed (some already right)
    est = paired_bootstrap(candidate, baseline, resamples=4000)
    assert est.mean == pytest.approx(np.mean(candidate - baseline))
    # the same percentile interval by hand: resample image indices, mean of the differences
    hand = np.random.default_rng(11)
    index = hand.integers(0, 200, size=(4000, 200))
    means = (candidate - baseline)[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    assert est.low == pytest.approx(low, abs=0.006) and est.high == pytest.approx(high, abs=0.006)
    assert est.low > 0  # fixing images never breaks one: the interval excludes zero
    same = paired_bootstrap(candidate, baseline, resamples=4000)
    assert (same.low, same.high) == (est.low, est.high)  # seeded: reproducible


def test_bootstrap_mean_of_few_seeds() -> None:
    est = bootstrap_mean([0.01, -0.02, 0.03])
    assert est.mean == pytest.approx(0.02 / 3) and -0.02 <= est.low <= est.high <= 0.03
    assert not bootstrap_mean([0.01]).has_interval


def test_identical_seed_pairs_found() -> None:
    per_seed = {0: {"a": 0.5, "b": 0.1}, 1: {"a": 0.5, "b": 0.1}, 2: {"a": 0.5, "b": 0.2}, 3: {}}
    assert identical_seed_pairs(per_seed) == [(0, 1)]


def _runs(arm: str, values: dict[int, float], **extra: dict[int, float]) -> list[SeedResult]:
    return [
        SeedResult(arm, seed, {"test/score": v, **{k: d[seed] for k, d in extra.items()}})
        for seed, v in values.items()
    ]


def test_evaluation_document_and_loud_identical_seed_warning() -> None:
    results = _runs("baseline", {0: 0.70, 1: 0.72}, **{"test/loss": {0: 0.3, 1: 0.28}})
    results += _runs("rank1", {0: 0.75, 1: 0.75}, **{"test/loss": {0: 0.2, 1: 0.2}})
    doc = analyse_evaluation(
        results,
        {"baseline": {"source": "points_to_evaluate[0]"}, "rank1": {"source": "trial a"}},
        baseline="baseline",
        objective="test/score",
        mode="max",
    )
    assert doc["metrics"] == ["test/score", "test/loss"]
    assert doc["arms"]["baseline"]["summary"]["test/score"]["mean"] == pytest.approx(0.71)
    diff = doc["comparisons"]["rank1"]["differences"]["test/score"]
    half = stats.t.ppf(0.975, 1) * np.std([0.05, 0.03], ddof=1) / math.sqrt(2)
    assert diff["mean"] == pytest.approx(0.04) and diff["high"] == pytest.approx(0.04 + half)
    assert doc["comparisons"]["rank1"]["verdict"].startswith("not distinguishable")  # 2 seeds: t(1) = 12.7
    assert doc["comparisons"]["rank1"]["bootstrap_images"]["reason"].startswith(
        "bootstrap over images unavailable"
    )
    assert any("rank1: seeds 0 and 1 gave identical metrics" in w for w in doc["warnings"])
    assert "**WARNING: rank1: seeds 0 and 1" in evaluation_markdown(doc)


def test_ablation_synergy_by_hand() -> None:
    seeds = [0, 1, 2]
    base, acc, rew, both = [0.60, 0.62, 0.61], [0.63, 0.64, 0.62], [0.61, 0.63, 0.63], [0.66, 0.66, 0.65]
    results = []
    for arm, values in (("baseline", base), ("accumulation", acc), ("reweighting", rew), ("both", both)):
        results += _runs(arm, dict(zip(seeds, values, strict=True)))
    doc = analyse_ablation(
        results,
        baseline="baseline",
        factors=["accumulation", "reweighting"],
        combined="both",
        metrics=["test/score"],
        objective="test/score",
        mode="max",
    )
    delta_acc = np.mean(np.subtract(acc, base))
    delta_rew = np.mean(np.subtract(rew, base))
    delta_both = np.mean(np.subtract(both, base))
    assert doc["deltas"]["accumulation"]["test/score"]["mean"] == pytest.approx(delta_acc)
    assert doc["additive_expectation"]["test/score"] == pytest.approx(delta_acc + delta_rew)
    per_seed = [b - a - r + z for b, a, r, z in zip(both, acc, rew, base, strict=True)]  # 0.02, 0.01, 0.01
    synergy = doc["synergy"]["test/score"]
    assert synergy["mean"] == pytest.approx(delta_both - (delta_acc + delta_rew))
    assert synergy["per_seed"] == {str(s): pytest.approx(v) for s, v in zip(seeds, per_seed, strict=True)}
    # every per-seed synergy is positive, so every bootstrap mean is: the interval excludes zero
    assert synergy["low"] == pytest.approx(0.01) and synergy["high"] == pytest.approx(0.02)
    assert doc["synergy_statement"].endswith(": distinguishable from zero")
    assert doc["verdicts"]["both"].startswith("better than the baseline: +0.047")
