"""``evaluation.json``: configurations retrained with the same seeds, summarised and compared.

Input: one ``SeedResult`` per (configuration, seed) with its test metrics and, when
the trainer's evaluation saved per-image statistics, its objective recomputable over any
resample of the test images (``ImageScores``). Output: a JSON-ready document
with, per configuration, the mean, standard deviation and t interval of every headline
metric over seeds; per configuration other than the baseline, the paired difference of
each headline metric over seeds (t interval), a plain verdict on the objective and a
paired bootstrap over test images for the median seed; and loud warnings (two seeds
with identical metrics, seeds missing from a configuration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hemotune.errors import UsageError
from hemotune.evidence.stats import (
    RECOMPUTED_RESAMPLES,
    Estimate,
    identical_seed_pairs,
    paired_bootstrap_statistic,
    paired_difference,
    t_interval,
    verdict,
)

NO_PER_IMAGE = "bootstrap over images unavailable: the trainer's evaluation wrote no per-image results"


@dataclass(frozen=True)
class ImageScores:
    """One evaluation's test images and its objective recomputed over any multiset of them.

    ``score(indices)`` (indices into ``images``, repeats allowed) is the trainer's own
    computation of the objective on those images (``Trainer.objective_on_subset``: mAP by
    Ultralytics' ``ap_per_class``, macro-F1 by scikit-learn); over all images it is the
    evaluation's value. Nothing here knows how it is computed.
    """

    images: Sequence[str]
    score: Callable[[np.ndarray], float]


@dataclass(frozen=True)
class SeedResult:
    """One configuration (``arm``) run with one seed: its metrics, per-image scores when known."""

    arm: str
    seed: int
    metrics: Mapping[str, float]
    per_image: ImageScores | None = None
    run_id: str | None = None


def headline_metrics(results: Sequence[SeedResult], objective: str, prefix: str) -> list[str]:
    """The objective first, then every other ``<prefix>/<name>`` metric (per-class ones left out)."""
    names = {k for r in results for k in r.metrics if k.startswith(f"{prefix}/") and k.count("/") == 1}
    return [objective, *sorted(names - {objective})] if objective in names else sorted(names)


def by_arm(results: Sequence[SeedResult]) -> dict[str, dict[int, SeedResult]]:
    """arm -> seed -> result, in the order the arms first appear."""
    arms: dict[str, dict[int, SeedResult]] = {}
    for result in results:
        arms.setdefault(result.arm, {})[result.seed] = result
    return arms


def arm_summary(runs: Mapping[int, SeedResult], metrics: Sequence[str]) -> dict[str, Any]:
    """Per seed its metrics; per metric the mean, sd and t interval over the seeds that report it."""
    summary = {}
    for metric in metrics:
        values = [runs[s].metrics[metric] for s in sorted(runs) if metric in runs[s].metrics]
        if values:
            summary[metric] = t_interval(values).as_dict()
    return {
        "seeds": sorted(runs),
        "per_seed": {
            str(s): {m: runs[s].metrics[m] for m in metrics if m in runs[s].metrics} for s in sorted(runs)
        },
        "run_ids": {str(s): runs[s].run_id for s in sorted(runs) if runs[s].run_id},
        "summary": summary,
    }


def metric_by_seed(runs: Mapping[int, SeedResult], metric: str) -> dict[int, float]:
    """seed -> value of ``metric`` (seeds that did not report it left out)."""
    return {s: r.metrics[metric] for s, r in runs.items() if metric in r.metrics}


def seed_warnings(arms: Mapping[str, Mapping[int, SeedResult]], metrics: Sequence[str]) -> list[str]:
    """Loud warnings: different seeds with identical metrics, and arms missing some seeds."""
    warnings = []
    all_seeds = sorted({s for runs in arms.values() for s in runs})
    for arm, runs in arms.items():
        per_seed = {s: {m: r.metrics[m] for m in metrics if m in r.metrics} for s, r in runs.items()}
        for first, second in identical_seed_pairs(per_seed):
            nothing = not any(per_seed[first].values())  # all 0.0: a model that learned nothing yet
            cause = "every one is 0: nothing was learned" if nothing else "seeding had no effect"
            warnings.append(
                f"WARNING: {arm}: seeds {first} and {second} gave identical metrics "
                f"({', '.join(metrics)}); {cause}, so every interval over seeds is meaningless"
            )
        missing = [s for s in all_seeds if s not in runs]
        if missing:
            warnings.append(f"WARNING: {arm}: no result for seed(s) {missing} (failed runs); fewer pairs")
    return warnings


def image_bootstrap(
    candidate: Mapping[int, SeedResult], baseline: Mapping[int, SeedResult], objective: str
) -> dict[str, Any]:
    """Paired bootstrap over test images of the objective's difference, for the candidate's median seed.

    Each resample draws test images with replacement; the same images (by name) go to the
    candidate and to the baseline of that seed, and each side's objective is recomputed on
    them (``ImageScores.score``), so the interval is of the objective itself (mAP50-95,
    macro-F1), not of a per-image proxy.
    """
    seeds = [
        s for s in sorted(candidate, key=lambda s: candidate[s].metrics.get(objective, 0.0)) if s in baseline
    ]
    if not seeds:
        return {"available": False, "reason": "no seed shared with the baseline"}
    seed = seeds[(len(seeds) - 1) // 2]
    ours, theirs = candidate[seed].per_image, baseline[seed].per_image
    if ours is None or theirs is None:
        return {"available": False, "seed": seed, "reason": NO_PER_IMAGE}
    images = sorted(set(ours.images) & set(theirs.images))
    if len(images) < 2:
        return {"available": False, "seed": seed, "reason": "fewer than 2 test images in common"}
    where_ours = {name: i for i, name in enumerate(ours.images)}
    where_theirs = {name: i for i, name in enumerate(theirs.images)}
    ia, ib = np.array([where_ours[i] for i in images]), np.array([where_theirs[i] for i in images])

    def difference(idx: np.ndarray) -> float:
        return ours.score(ia[idx]) - theirs.score(ib[idx])

    try:
        estimate = paired_bootstrap_statistic(len(images), difference)
        values = (ours.score(ia), theirs.score(ib))
    except UsageError as exc:  # the trainer cannot recompute this objective per image
        return {"available": False, "seed": seed, "reason": f"bootstrap over images unavailable: {exc}"}
    return {
        "available": True,
        "seed": seed,
        "images": len(images),
        "statistic": objective,
        "candidate": values[0],
        "baseline": values[1],
        "resamples": RECOMPUTED_RESAMPLES,
        **estimate.as_dict(),
    }


def compare(
    candidate: Mapping[int, SeedResult],
    baseline: Mapping[int, SeedResult],
    metrics: Sequence[str],
    objective: str,
    mode: str,
) -> dict[str, Any]:
    """Paired differences (candidate - baseline) over seeds, the verdict, the bootstrap over images."""
    differences: dict[str, Estimate] = {}
    for metric in metrics:
        ours, theirs = metric_by_seed(candidate, metric), metric_by_seed(baseline, metric)
        if set(ours) & set(theirs):
            differences[metric] = paired_difference(ours, theirs)
    result: dict[str, Any] = {"differences": {m: e.as_dict() for m, e in differences.items()}}
    result["verdict"] = (
        verdict(differences[objective], mode) if objective in differences else "no paired seed to compare"
    )
    result["bootstrap_images"] = image_bootstrap(candidate, baseline, objective)
    return result


def analyse_evaluation(
    results: Sequence[SeedResult],
    arms: Mapping[str, Mapping[str, Any]],
    *,
    baseline: str,
    objective: str,
    mode: str,
    prefix: str = "test",
) -> dict[str, Any]:
    """The ``evaluation.json`` document; ``arms`` describes each configuration (source, config)."""
    grouped = by_arm(results)
    metrics = headline_metrics(results, objective, prefix)
    doc: dict[str, Any] = {
        "objective": objective,
        "mode": mode,
        "baseline": baseline,
        "metrics": metrics,
        "seeds": sorted({r.seed for r in results}),
        "arms": {},
        "comparisons": {},
        "warnings": seed_warnings(grouped, metrics),
    }
    for name, description in arms.items():
        runs = grouped.get(name, {})
        doc["arms"][name] = {**dict(description), **arm_summary(runs, metrics)}
        if name != baseline and runs and grouped.get(baseline):
            doc["comparisons"][name] = compare(runs, grouped[baseline], metrics, objective, mode)
    return doc
