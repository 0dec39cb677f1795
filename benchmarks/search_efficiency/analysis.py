"""From trials in order of completion to the figures: best-so-far curves, epochs to reach, statistics, plots.

A search's budget is counted in training epochs: after the k-th completed trial the
search has spent the summed epochs of its first k trials, and its best is the best
objective of those k trials (each at its own best epoch, the way hemotune ranks).
With two trials at a time this ignores the epochs of the trial still running when one
ends, the same way for every method.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LABELS = {
    "tpe_asha": "hemotune TPE + ASHA",
    "random_asha": "random + ASHA",
    "random_none": "random, no early stopping",
    "ultralytics": "Ultralytics tuner (GA)",
}


def curve(trials: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """``[cumulative epochs, best objective so far]`` after each completed trial (non-decreasing)."""
    points, spent, best = [], 0, -math.inf
    for t in trials:
        spent += int(t["epochs"])
        best = max(best, float(t["objective"]))
        points.append([spent, round(best, 5)])
    return points


def best_at(points: Sequence[Sequence[float]], budget: float) -> float | None:
    """The best found within ``budget`` cumulative epochs (``None`` before the first trial ended)."""
    within = [p[1] for p in points if p[0] <= budget]
    return max(within) if within else None


def epochs_to_reach(points: Sequence[Sequence[float]], value: float) -> int | None:
    """The cumulative epochs after which the best found first reached ``value`` (``None``: never)."""
    for spent, best in points:
        if best >= value - 1e-12:
            return int(spent)
    return None


def band(curves: Sequence[Sequence[Sequence[float]]], grid: np.ndarray) -> dict[str, list[float]]:
    """Mean, min and max over seeds of the best-so-far at each grid budget, up to the budget every seed spent."""
    reached_by_all = min((c[-1][0] for c in curves if c), default=0)

    def at(c: Sequence[Sequence[float]], b: float) -> float:
        found = best_at(c, b)  # NaN before the first trial ended and past what every seed spent
        return np.nan if found is None or b > reached_by_all else found

    values = np.array([[at(c, b) for b in grid] for c in curves], dtype=float)
    with warnings.catch_warnings():  # NaN columns: budgets before any trial of any seed ended
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "mean": np.nanmean(values, axis=0).tolist() if len(curves) else [],
            "min": np.nanmin(values, axis=0).tolist() if len(curves) else [],
            "max": np.nanmax(values, axis=0).tolist() if len(curves) else [],
        }


def compare(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, Any]:
    """Is ``ours`` higher than ``theirs``? A one-sided Mann-Whitney U and a bootstrap interval of the mean difference.

    With three seeds a side the exact one-sided U test cannot go below p = 0.05 (1/20):
    ``decided`` is then False by construction, and says so rather than claiming a winner.
    """
    from scipy import stats

    a, b = np.asarray(ours, float), np.asarray(theirs, float)
    out: dict[str, Any] = {
        "ours": [round(x, 5) for x in a],
        "theirs": [round(x, 5) for x in b],
        "mean_difference": round(float(a.mean() - b.mean()), 5) if len(a) and len(b) else None,
        "ranges_overlap": bool(len(a) and len(b) and a.min() <= b.max() and b.min() <= a.max()),
    }
    if len(a) < 2 or len(b) < 2 or np.ptp(np.concatenate([a, b])) == 0:
        out.update(mann_whitney_p=None, bootstrap_ci95=None, decided=False)
        return out
    test = stats.mannwhitneyu(a, b, alternative="greater", method="exact")
    boot = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        n_resamples=2000,
        random_state=0,
        method="percentile",
    )
    ci = [round(float(boot.confidence_interval.low), 5), round(float(boot.confidence_interval.high), 5)]
    out.update(
        mann_whitney_p=round(float(test.pvalue), 4),
        bootstrap_ci95=ci,
        decided=bool(test.pvalue < 0.05 and not out["ranges_overlap"]),
    )
    return out


def summarize_task(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], reference: str, budget: int
) -> dict[str, Any]:
    """Per method: curves by seed, band, final bests, epochs to reach the reference method's final best."""
    curves = {m: [curve(r["trials"]) for r in rs] for m, rs in runs.items()}
    ref_finals = [c[-1][1] for c in curves.get(reference, []) if c]
    ref_value = float(np.mean(ref_finals)) if ref_finals else None
    ref_epochs = float(np.mean([c[-1][0] for c in curves.get(reference, []) if c])) if ref_finals else None
    top = max((p[0] for cs in curves.values() for c in cs for p in c), default=budget)
    grid = np.arange(0, int(top) + 1)
    methods: dict[str, Any] = {}
    for method, cs in curves.items():
        reach = [epochs_to_reach(c, ref_value) if ref_value is not None else None for c in cs]
        reached = [r for r in reach if r is not None]
        methods[method] = {
            "label": LABELS[method],
            "seeds": [r["seed"] for r in runs[method]],
            "curves": cs,
            "wall_s": [r["wall_s"] for r in runs[method]],
            "total_epochs": [c[-1][0] if c else 0 for c in cs],
            "final_best": [c[-1][1] if c else None for c in cs],
            "best_at_budget": [best_at(c, budget) for c in cs],
            "epochs_to_reach_reference": reach,
            "seeds_reaching_reference": len(reached),
            "mean_epochs_to_reach_reference": float(np.mean(reached)) if reached else None,
            "fraction_of_reference_epochs": (
                round(float(np.mean(reached)) / ref_epochs, 3) if reached and ref_epochs else None
            ),
            "band": {"epochs": grid.tolist(), **band(cs, grid)},
        }
    return {
        "reference_method": reference,
        "reference_final_best_mean": round(ref_value, 5) if ref_value is not None else None,
        "reference_epochs_mean": ref_epochs,
        "equal_budget_epochs": budget,
        "methods": methods,
    }


def plot_task(summary: Mapping[str, Any], title: str, ylabel: str, path: Path) -> None:
    """Best objective found against cumulative training epochs: mean line and min-max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for m in summary["methods"].values():
        x = np.array(m["band"]["epochs"])
        mean, low, high = (np.array(m["band"][k], dtype=float) for k in ("mean", "min", "max"))
        n = len(m["seeds"])
        (line,) = ax.step(x, mean, where="post", label=f"{m['label']} ({n} seeds)")
        ax.fill_between(x, low, high, step="post", alpha=0.18, color=line.get_color())
    ref = summary["reference_final_best_mean"]
    if ref is not None:
        ax.axhline(
            ref,
            ls="--",
            lw=0.8,
            color="grey",
            label=f"{LABELS[summary['reference_method']]}: final best (mean)",
        )
    ax.axvline(summary["equal_budget_epochs"], ls=":", lw=0.8, color="black")
    ax.set_xlabel("cumulative training epochs")
    ax.set_ylabel(f"best {ylabel} found")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
