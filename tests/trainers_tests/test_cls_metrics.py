"""Classification metrics against scikit-learn (and hand-computed values) on fixed arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from hemotune.trainers.image_classification import ImageClassificationTrainer
from hemotune.trainers.image_classification.metrics import (
    classification_metrics,
    confusion,
    metric_class_names,
    sanitize_name,
    write_confusion_artifacts,
)

Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 0, 1, 2])
Y_PRED = np.array([0, 0, 1, 0, 1, 2, 1, 2, 2, 0, 2, 1, 0, 1, 2])
CLASSES = ["neutrophil", "lymphocyte", "ig"]


def test_multiclass_matches_sklearn() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    assert m["val/accuracy"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert m["val/balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert m["val/macro_precision"] == pytest.approx(precision_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["val/macro_recall"] == pytest.approx(recall_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["val/macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["val/cohen_kappa"] == pytest.approx(cohen_kappa_score(Y_TRUE, Y_PRED))
    recalls = recall_score(Y_TRUE, Y_PRED, average=None)
    precisions = precision_score(Y_TRUE, Y_PRED, average=None)
    f1s = f1_score(Y_TRUE, Y_PRED, average=None)
    assert m["val/min_class_recall"] == pytest.approx(recalls.min())
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    for i, name in enumerate(CLASSES):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        tn = cm.sum() - tp - fp - fn
        assert m[f"val/specificity/{name}"] == pytest.approx(tn / (tn + fp))
        assert m[f"val/recall/{name}"] == pytest.approx(recalls[i])
        assert m[f"val/precision/{name}"] == pytest.approx(precisions[i])
        assert m[f"val/f1/{name}"] == pytest.approx(f1s[i])
    specs = [m[f"val/specificity/{c}"] for c in CLASSES]
    assert m["val/specificity"] == pytest.approx(np.mean(specs))
    assert m["val/sensitivity"] == pytest.approx(m["val/macro_recall"])


def test_hand_computed_values() -> None:
    # class 0: 5 true, 4 right (one predicted 1); predictions of 0: 5 (one true 2) -> recall 0.8
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    assert m["val/recall/neutrophil"] == pytest.approx(4 / 5)
    assert m["val/recall/lymphocyte"] == pytest.approx(3 / 4)
    assert m["val/recall/ig"] == pytest.approx(4 / 6)
    assert m["val/min_class_recall"] == pytest.approx(4 / 6)
    # neutrophil: FP = 1 (one ig predicted as neutrophil), TN = 15 - 5 - 1 = 9
    assert m["val/specificity/neutrophil"] == pytest.approx(9 / 10)


def test_binary_specificity_and_sensitivity_with_positive_class() -> None:
    classes = ["Cancer", "Normal"]
    # 0 = Cancer (positive), 1 = Normal
    y_true = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    m = classification_metrics(y_true, y_pred, classes, positive_class="Cancer")
    tp, fn, fp, tn = 4, 2, 1, 3
    assert m["val/sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["val/specificity"] == pytest.approx(tn / (tn + fp))
    assert m["val/sensitivity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=0))
    assert m["val/specificity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=1))
    # Per-class specificity of Cancer is the recall of Normal, and vice versa.
    assert m["val/specificity/Cancer"] == pytest.approx(3 / 4)
    assert m["val/specificity/Normal"] == pytest.approx(4 / 6)
    # Default positive class: the second one (scikit-learn's pos_label=1).
    d = classification_metrics(y_true, y_pred, classes)
    assert d["val/sensitivity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=1))
    assert d["val/specificity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=0))


def test_absent_and_degenerate_classes_give_finite_values() -> None:
    y_true = np.array([0, 0, 0, 0])
    y_pred = np.array([0, 0, 0, 0])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert all(np.isfinite(v) for v in m.values())
    assert m["val/min_class_recall"] == 1.0  # only over classes present in y_true
    assert m["val/cohen_kappa"] == 0.0  # undefined (one class only) -> 0
    assert m["val/macro_recall"] == pytest.approx(
        recall_score(y_true, y_pred, labels=[0, 1, 2], average="macro", zero_division=0)
    )


def test_every_reported_name_is_declared_and_mlflow_safe() -> None:
    trainer = ImageClassificationTrainer()
    classes = ["Early (B-ALL)", "Pre/Pro", "naïve#1", "Pre/Pro"]
    names = metric_class_names(classes)
    assert len(set(names)) == len(names)
    m = classification_metrics([0, 1, 2, 3], [0, 1, 2, 2], classes)
    for key in m:
        assert trainer.is_known_metric(key), key
        assert all(c.isalnum() or c in "_-./ :" for c in key), key
    assert sanitize_name("Pre/Pro") == "Pre/Pro"
    assert sanitize_name("naïve#1") == "na_ve_1"


def test_confusion_artifacts(tmp_path) -> None:
    matrix = confusion(Y_TRUE, Y_PRED, 3)
    assert (matrix == confusion_matrix(Y_TRUE, Y_PRED)).all()
    png, js = write_confusion_artifacts(matrix, CLASSES, tmp_path, title="t", extra={"epoch": 3})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads(js.read_text())
    assert payload["matrix"] == matrix.tolist() and payload["classes"] == CLASSES and payload["epoch"] == 3
