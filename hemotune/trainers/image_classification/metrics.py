"""Classification metrics from labels and predictions, computed with scikit-learn.

``classification_metrics`` gives every metric the classification trainer
reports, under the names search spaces use as objectives::

    val/accuracy  val/balanced_accuracy  val/macro_precision  val/macro_recall
    val/macro_f1  val/cohen_kappa  val/min_class_recall  val/specificity
    val/sensitivity  val/recall/<class>  val/precision/<class>  val/f1/<class>
    val/specificity/<class>

Binary tasks: ``sensitivity`` is the recall of the positive class and
``specificity`` is TN/(TN+FP) with that positive class (the recall of the
negative one). Multi-class: ``sensitivity`` is the macro recall and
``specificity`` the macro one-vs-rest specificity. Macro averages run over all
classes of the task (``labels=range(K)``); a class absent from ``y_true`` has
recall 0 there (scikit-learn's ``zero_division=0``) but is left out of
``min_class_recall``, which is over the classes present. Class names are
sanitised for MLflow (alphanumerics and ``_ - . / space :`` only).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hemotune.errors import UsageError
from hemotune.metrics import metric_key

#: Aggregate metric names (without the ``val/`` prefix), in report order.
AGGREGATE_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "cohen_kappa",
    "min_class_recall",
    "specificity",
    "sensitivity",
)
#: Per-class metric families: ``<prefix><family>/<class>``.
PER_CLASS_METRICS = ("recall", "precision", "f1", "specificity")


def sanitize_name(name: str) -> str:
    """A class name usable in an MLflow metric name: ``metric_key``, stripped, ``""`` made ``_``."""
    cleaned = metric_key(name).strip()
    return cleaned or "_"


def metric_class_names(classes: Sequence[str]) -> list[str]:
    """Sanitised, unique class names (a clash gets ``_2``, ``_3`` ... appended)."""
    out: list[str] = []
    for name in classes:
        base = candidate = sanitize_name(name)
        n = 2
        while candidate in out:
            candidate = f"{base}_{n}"
            n += 1
        out.append(candidate)
    return out


def _finite(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    *,
    positive_class: str | None = None,
    prefix: str = "val/",
    over: Sequence[int] | None = None,
) -> dict[str, float]:
    """Every reported metric for integer labels ``y_true`` and predictions ``y_pred``.

    ``positive_class`` (binary only) names the class whose recall is the
    sensitivity; ``None`` takes the second class, as scikit-learn's ``pos_label=1``.
    ``over`` (evaluation on a split lacking some classes) restricts the macro
    averages and the per-class metrics to those class indices; accuracy, kappa and
    balanced accuracy stay over all samples, and a binary task whose positive
    class is left out has no sensitivity/specificity. Default: every class (training).
    """

    with warnings.catch_warnings():
        # Undefined cases (a class never predicted, one class only) are defined as 0 below.
        warnings.simplefilter("ignore")
        return _metrics(y_true, y_pred, classes, positive_class, prefix, over)


def _metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    positive_class: str | None,
    prefix: str,
    over: Sequence[int] | None = None,
) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        multilabel_confusion_matrix,
        precision_recall_fscore_support,
    )

    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    everything = list(range(len(classes)))
    labels = everything if over is None else sorted(int(i) for i in over)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=labels, average=None, zero_division=0
    )
    macro_p, macro_r, macro_f1, _ = precision_recall_fscore_support(
        true, pred, labels=labels, average="macro", zero_division=0
    )
    mcm = multilabel_confusion_matrix(true, pred, labels=labels)
    tn, fp = mcm[:, 0, 0].astype(float), mcm[:, 0, 1].astype(float)
    specificity = np.divide(tn, tn + fp, out=np.zeros_like(tn), where=(tn + fp) > 0)
    present = support > 0
    out: dict[str, float] = {
        "accuracy": accuracy_score(true, pred),
        "balanced_accuracy": balanced_accuracy_score(true, pred) if present.any() else 0.0,
        "macro_precision": macro_p,
        "macro_recall": macro_r,
        "macro_f1": macro_f1,
        "cohen_kappa": cohen_kappa_score(true, pred, labels=everything),
        "min_class_recall": recall[present].min() if present.any() else 0.0,
    }
    if len(classes) == 2:
        pos = 1 if positive_class is None else list(classes).index(positive_class)
        if pos in labels:
            j = labels.index(pos)
            out["sensitivity"] = recall[j]
            out["specificity"] = specificity[j]  # TN/(TN+FP) with ``pos`` as the positive class
    else:
        out["sensitivity"] = macro_r
        out["specificity"] = specificity.mean()
    metrics = {f"{prefix}{k}": _finite(out[k]) for k in AGGREGATE_METRICS if k in out}
    names = metric_class_names(classes)
    for i, name in enumerate(names[c] for c in labels):
        metrics[f"{prefix}recall/{name}"] = _finite(recall[i])
        metrics[f"{prefix}precision/{name}"] = _finite(precision[i])
        metrics[f"{prefix}f1/{name}"] = _finite(f1[i])
        metrics[f"{prefix}specificity/{name}"] = _finite(specificity[i])
    return metrics


def confusion(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """The K x K confusion matrix (rows: true class, columns: predicted)."""
    from sklearn.metrics import confusion_matrix

    return np.asarray(confusion_matrix(y_true, y_pred, labels=list(range(num_classes))))


def write_confusion_artifacts(
    matrix: np.ndarray,
    classes: Sequence[str],
    folder: Any,
    *,
    title: str,
    extra: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """``confusion_matrix.png`` (counts and row-normalised colours) and ``.json`` into ``folder``."""
    import json
    from pathlib import Path

    from matplotlib.figure import Figure  # no pyplot: no GUI backend, Agg canvas, bundled DejaVu font

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, png_path = folder / "confusion_matrix.json", folder / "confusion_matrix.png"
    payload = {
        "classes": list(classes),
        "rows": "true class",
        "columns": "predicted class",
        "matrix": matrix.tolist(),
        **(extra or {}),
    }
    json_path.write_text(json.dumps(payload, indent=2))
    k = len(classes)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = max(4.0, 0.6 * k + 2.0)
    fig = Figure(figsize=(side, side), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                color="white" if normalised[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    fig.savefig(png_path)
    return png_path, json_path


def _single_metric(name: str, true: np.ndarray, pred: np.ndarray, labels: list[int]) -> float | None:
    """One aggregate metric by the one scikit-learn call ``_metrics`` makes for it (with its arguments).

    About 5x cheaper than ``classification_metrics`` (which computes every metric): a bootstrap
    recomputes the objective thousands of times. ``None`` for a metric not listed here.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support

    macro = ("macro_precision", "macro_recall", "macro_f1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in macro:
            values = precision_recall_fscore_support(
                true, pred, labels=labels, average="macro", zero_division=0
            )
            return _finite(values[macro.index(name)])
        if name == "accuracy":
            return _finite(accuracy_score(true, pred))
        if name == "balanced_accuracy" and np.isin(true, labels).any():
            return _finite(balanced_accuracy_score(true, pred))
    return None


def subset_metric(per_image: Mapping[str, Any], metric: str, indices: np.ndarray) -> float:
    """``metric`` (``<split>/<name>``) over images ``indices`` with training's scikit-learn calls.

    The accuracy, balanced accuracy and macro P/R/F1 by the single call ``_metrics`` makes for
    each (``_single_metric``); any other metric by ``classification_metrics`` itself. The macro
    averages run over the classes the full split was averaged over (``over``), so a resample
    lacking a class counts it as scikit-learn does (recall 0), not as absent.
    """
    chosen = np.asarray(indices, dtype=np.int64)
    classes = [str(c) for c in per_image["classes"]]
    over = [int(i) for i in per_image["over"]]
    split, _, name = metric.rpartition("/")
    true = np.asarray(per_image["y_true"], dtype=np.int64)[chosen]
    pred = np.asarray(per_image["y_pred"], dtype=np.int64)[chosen]
    value = _single_metric(name, true, pred, sorted(over))
    if value is not None:
        return value
    values = classification_metrics(
        true,
        pred,
        classes,
        positive_class=str(per_image["positive_class"]) or None,
        prefix=f"{split or 'test'}/",
        over=None if len(over) == len(classes) else over,
    )
    if metric not in values:
        raise UsageError(
            f"{metric!r} cannot be recomputed from per-image labels; recomputable: {sorted(values)}"
        )
    return float(values[metric])
