"""The paired bootstrap over test images of a recomputed objective, on hand-made arrays (fast lane).

The classifier's hook recomputes macro-F1 (and every other objective) with the scikit-learn
function training uses; the evidence layer resamples the same images for both sides.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from hemotune.errors import UsageError
from hemotune.evidence import ImageScores, SeedResult, analyse_evaluation, paired_bootstrap_statistic
from hemotune.trainers.image_classification import ImageClassificationTrainer
from hemotune.trainers.image_classification.metrics import AGGREGATE_METRICS, classification_metrics

TRAINER = ImageClassificationTrainer()
CLASSES = ["neutrophil", "lymphocyte", "ig"]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 0, 1, 2, 1])
Y_PRED = np.array([0, 0, 1, 0, 1, 2, 1, 2, 2, 0, 2, 1, 0, 1, 2, 1])


def _per_image(y_pred: np.ndarray, order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    order = np.arange(len(Y_TRUE)) if order is None else order
    return {
        "images": np.array([f"img_{i:02d}.png" for i in order]),
        "y_true": Y_TRUE[order],
        "y_pred": y_pred[order],
        "classes": np.array(CLASSES),
        "over": np.arange(len(CLASSES)),
        "positive_class": np.array(""),
    }


def test_macro_f1_over_a_resample_with_repeats_equals_scikit_learn() -> None:
    per_image = _per_image(Y_PRED)
    everything = np.arange(len(Y_TRUE))
    full = TRAINER.objective_on_subset(per_image, "test/macro_f1", everything)
    assert full == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro", labels=[0, 1, 2]), abs=1e-12)
    draw = np.array([0, 0, 3, 5, 5, 5, 9, 11, 14, 14, 15, 2])  # repeats, and classes unevenly drawn
    value = TRAINER.objective_on_subset(per_image, "test/macro_f1", draw)
    expected = f1_score(Y_TRUE[draw], Y_PRED[draw], average="macro", labels=[0, 1, 2], zero_division=0)
    assert value == pytest.approx(expected, abs=1e-12) and value != pytest.approx(full)
    balanced = TRAINER.objective_on_subset(per_image, "test/balanced_accuracy", draw)
    assert balanced == pytest.approx(balanced_accuracy_score(Y_TRUE[draw], Y_PRED[draw]), abs=1e-12)
    for name in AGGREGATE_METRICS[:6]:  # accuracy ... cohen_kappa: the ones a single sklearn call gives
        # the one scikit-learn call per metric gives what training's classification_metrics gives
        whole = classification_metrics(Y_TRUE[draw], Y_PRED[draw], CLASSES, prefix="test/")
        assert TRAINER.objective_on_subset(per_image, f"test/{name}", draw) == pytest.approx(
            whole[f"test/{name}"]
        )
    with pytest.raises(UsageError, match="test/loss"):
        TRAINER.objective_on_subset(per_image, "test/loss", draw)


def _scores(per_image: dict[str, np.ndarray]) -> ImageScores:
    """Balanced accuracy (mean per-class recall: not a mean over images), in numpy for speed."""
    true, pred = per_image["y_true"], per_image["y_pred"]

    def balanced(idx: np.ndarray) -> float:
        t, p = true[idx], pred[idx]
        return float(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)]))

    return ImageScores([str(i) for i in per_image["images"]], balanced)


def test_the_bootstrap_is_paired_by_image_name_and_of_the_objective_itself() -> None:
    better = Y_TRUE.copy()
    better[[2, 5]] = Y_PRED[[2, 5]]  # the candidate fixes all but two of the baseline's mistakes
    shuffled = np.random.default_rng(1).permutation(
        len(Y_TRUE)
    )  # the baseline lists its images in another order
    results = [
        SeedResult("baseline", 0, {"test/balanced_accuracy": 0.0}, _scores(_per_image(Y_PRED, shuffled))),
        SeedResult("rank1", 0, {"test/balanced_accuracy": 0.0}, _scores(_per_image(better))),
        SeedResult("same", 0, {"test/balanced_accuracy": 0.0}, _scores(_per_image(Y_PRED))),
    ]
    arms = {a: {"source": a} for a in ("baseline", "rank1", "same")}
    doc = analyse_evaluation(
        results, arms, baseline="baseline", objective="test/balanced_accuracy", mode="max"
    )
    images = doc["comparisons"]["rank1"]["bootstrap_images"]
    ba = {k: balanced_accuracy_score(Y_TRUE, y) for k, y in (("ours", better), ("theirs", Y_PRED))}
    assert images["available"] and images["images"] == len(Y_TRUE) and images["resamples"] == 1000
    assert images["statistic"] == "test/balanced_accuracy"
    assert (images["candidate"], images["baseline"]) == pytest.approx((ba["ours"], ba["theirs"]))
    assert images["mean"] == pytest.approx(ba["ours"] - ba["theirs"])  # the objective's difference
    assert 0.0 <= images["low"] < images["mean"] < images["high"]
    # the same predictions under another image order: every resample gives both sides the same
    # images, so every difference is exactly 0 (an unpaired resampling would not be)
    same = doc["comparisons"]["same"]["bootstrap_images"]
    assert (same["mean"], same["low"], same["high"], same["sd"]) == (0.0, 0.0, 0.0, 0.0)


def test_a_recomputed_statistic_bootstrap_matches_scipy_over_the_mean() -> None:
    """For a mean, recomputing per resample is the ordinary bootstrap of the mean (same interval)."""
    from scipy import stats

    values = np.random.default_rng(3).normal(0.5, 0.2, 40)
    estimate = paired_bootstrap_statistic(40, lambda idx: float(values[idx].mean()), resamples=2000)
    reference = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(0)
    )
    assert estimate.mean == pytest.approx(values.mean())
    assert estimate.low == pytest.approx(reference.confidence_interval.low, abs=5e-3)
    assert estimate.high == pytest.approx(reference.confidence_interval.high, abs=5e-3)
