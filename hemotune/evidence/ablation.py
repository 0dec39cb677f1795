"""``ablation.json``: a 2x2 ablation (baseline, factor A, factor B, both) with error bars.

Each arm ran with the same seeds. Per arm: mean and t interval of every metric over
seeds. Per arm other than the baseline: its change over the baseline, paired by seed
(t interval). The additive expectation ``ΔA + ΔB`` (what "both" would give if the two
factors did not interact), and the synergy as the YOLOv11n-Opt study defines it,
``Δboth − (ΔA + ΔB)``; per seed that is ``both − A − B + baseline``, and its interval
is a bootstrap over seeds. The plain statement says whether that interval excludes zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hemotune.evidence.evaluation import SeedResult, arm_summary, by_arm, metric_by_seed, seed_warnings
from hemotune.evidence.stats import Estimate, bootstrap_mean, ci_text, paired_difference, signed, verdict


def synergy_by_seed(
    arms: Mapping[str, Mapping[int, SeedResult]],
    metric: str,
    baseline: str,
    factors: Sequence[str],
    combined: str,
) -> dict[int, float]:
    """seed -> ``both − A − B + baseline`` for the seeds all four arms report ``metric`` for."""
    values = {name: metric_by_seed(arms.get(name, {}), metric) for name in (baseline, *factors, combined)}
    seeds = set.intersection(*(set(v) for v in values.values()))
    first, second = factors
    return {
        s: values[combined][s] - values[first][s] - values[second][s] + values[baseline][s]
        for s in sorted(seeds)
    }


def synergy_statement(
    estimate: Estimate | None, factors: Sequence[str], combined: str, digits: int = 4
) -> str:
    """Plainly: the synergy, its bootstrap interval, and whether that excludes zero."""
    name = f"synergy Δ{combined} − (Δ{factors[0]} + Δ{factors[1]})"
    if estimate is None:
        return f"{name}: no seed ran in all four arms"
    if not estimate.has_interval:
        return (
            f"{name} = {signed(estimate.mean, digits)} from {estimate.n} seed: no interval, so it cannot be "
            f"told apart from seed-to-seed noise (run more seeds)"
        )
    excludes_zero = estimate.low > 0 or estimate.high < 0
    reading = "distinguishable from zero" if excludes_zero else "not distinguishable from zero"
    return (
        f"{name} = {signed(estimate.mean, digits)} "
        f"({ci_text(estimate, digits, label='95% bootstrap CI over seeds')}): {reading}"
    )


def analyse_ablation(
    results: Sequence[SeedResult],
    *,
    baseline: str,
    factors: Sequence[str],
    combined: str,
    metrics: Sequence[str],
    objective: str,
    mode: str,
) -> dict[str, Any]:
    """The ``ablation.json`` document (``metrics`` lists the objective first)."""
    arms = by_arm(results)
    order = [baseline, *factors, combined]
    doc: dict[str, Any] = {
        "objective": objective,
        "mode": mode,
        "metrics": list(metrics),
        "baseline": baseline,
        "factors": list(factors),
        "combined": combined,
        "seeds": sorted({r.seed for r in results}),
        "arms": {name: arm_summary(arms.get(name, {}), metrics) for name in order},
        "deltas": {},
        "verdicts": {},
        "additive_expectation": {},
        "synergy": {},
        "warnings": seed_warnings({n: arms.get(n, {}) for n in order}, metrics),
    }
    base = arms.get(baseline, {})
    for name in order[1:]:
        deltas = {}
        for metric in metrics:
            ours, theirs = metric_by_seed(arms.get(name, {}), metric), metric_by_seed(base, metric)
            if set(ours) & set(theirs):
                deltas[metric] = paired_difference(ours, theirs)
        doc["deltas"][name] = {m: e.as_dict() for m, e in deltas.items()}
        doc["verdicts"][name] = verdict(deltas[objective], mode) if objective in deltas else "no paired seed"
    for metric in metrics:
        factor_deltas = [doc["deltas"][f].get(metric) for f in factors]
        if all(factor_deltas):
            doc["additive_expectation"][metric] = sum(d["mean"] for d in factor_deltas if d)
        contrast = synergy_by_seed(arms, metric, baseline, factors, combined)
        if contrast:
            estimate = bootstrap_mean(list(contrast.values()))
            doc["synergy"][metric] = {
                **estimate.as_dict(),
                "per_seed": {str(s): v for s, v in contrast.items()},
            }
    contrast = synergy_by_seed(arms, objective, baseline, factors, combined)
    doc["synergy_statement"] = synergy_statement(
        bootstrap_mean(list(contrast.values())) if contrast else None, factors, combined
    )
    return doc
