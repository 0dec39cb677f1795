"""``image_classification`` evaluation: best.pt on val reproduces the logged best, test splits, bad test sets.

Real pbc8 images (8 per class, cached at 32 px) train a resnet18 for 2 epochs once
per module; the independent test sets are real pbc8 images copied into new folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hemotune.errors import UsageError
from hemotune.trainers import TrialContext
from hemotune.trainers.base import PreparedData
from hemotune.trainers.image_classification import ImageClassificationTrainer

TRAINER = ImageClassificationTrainer()
PBC8_CLASSES = [
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
]


def pbc8_dataset(pbc8_dir: Path, **options: Any) -> dict[str, Any]:
    return {"path": str(pbc8_dir), "cache_imgsz": 32, "max_images_per_class": 8, **options}


def copy_images(pbc8_dir: Path, target: Path, per_class: dict[str, int]) -> Path:
    """``target/<class>/`` holding the last ``n`` pbc8 images (by name) of each class."""
    for name, n in per_class.items():
        (target / name).mkdir(parents=True, exist_ok=True)
        for src in sorted((pbc8_dir / "all" / name).glob("*.jpg"))[-n:]:
            shutil.copyfile(src, target / name / src.name)
    return target


class Recorder:
    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def __call__(self, metrics: Any, *, checkpoint: Path | None = None, artifacts: Any = None) -> None:
        self.metrics.append(dict(metrics))


def params(data: Path) -> dict[str, Any]:
    return TRAINER.resolve(
        {
            "model": "resnet18",
            "imgsz": 32,
            "batch": 8,
            "epochs": 2,
            "seed": 0,
            "data": str(data),
            "optimizer": "AdamW",
            "base_lr": 2e-3,
            "reference_batch": 8,
        }
    )


@pytest.fixture(scope="module")
def trained(pbc8_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-epoch resnet18 on 8 pbc8 images per class: its data, resolved params, workdir and epoch reports."""
    data = TRAINER.prepare_data(pbc8_dataset(pbc8_dir), {}, cache_dir)
    resolved = params(data.path)
    workdir = tmp_path_factory.mktemp("cls-trial")
    recorder = Recorder()
    TRAINER.train(resolved, recorder, TrialContext(workdir=workdir, objective="val/macro_f1"))
    best = max(recorder.metrics, key=lambda m: (m["val/macro_f1"], -m["epoch"]))
    return {"data": data, "resolved": resolved, "workdir": workdir, "best": best, "reports": recorder.metrics}


@pytest.mark.slow
def test_best_weights_on_val_reproduce_every_logged_val_metric_of_the_best_epoch(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    weights = trained["workdir"] / "weights" / "best.pt"
    assert weights.is_file()  # where both trainers keep the best epoch's weights
    metrics = TRAINER.evaluate(
        weights, trained["data"], "val", trained["resolved"], TrialContext(workdir=tmp_path)
    )
    logged = {k: v for k, v in trained["best"].items() if k.startswith("val/")}
    assert len(logged) == 9 + 4 * 8 + 1  # aggregates, 4 per-class families x 8 classes, val/loss
    assert set(metrics) == set(logged)
    for key, value in logged.items():
        assert metrics[key] == pytest.approx(value, abs=1e-3), key
    details = json.loads((tmp_path / "evaluation" / "val.json").read_text())
    assert details["missing_classes"] == [] and details["macro_over"] == PBC8_CLASSES
    matrix = np.array(details["confusion_matrix"])
    assert matrix.shape == (8, 8) and matrix.sum() == details["images"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["val/accuracy"])
    assert (tmp_path / "evaluation" / "val" / "confusion_matrix.png").is_file()


@pytest.mark.slow
def test_the_recorded_split_has_a_test_part_that_evaluates_under_test_names(
    trained: dict[str, Any], pbc8_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    test = TRAINER.prepare_test_data(pbc8_dataset(pbc8_dir), None, {}, cache_dir)
    assert test is not None and test.path == trained["data"].path  # the recorded split's test part
    assert test.summary["missing_classes"] == [] and sum(test.summary["test_counts"].values()) == 8
    details = TRAINER.evaluate_details(
        trained["workdir"] / "weights" / "best.pt",
        test,
        "test",
        trained["resolved"],
        TrialContext(workdir=tmp_path),
    )
    metrics = details["metrics"]
    assert {"test/accuracy", "test/macro_f1", "test/balanced_accuracy", "test/specificity"} <= set(metrics)
    assert all(k.startswith("test/") for k in metrics) and len(metrics) == 9 + 4 * 8 + 1
    assert details["images"] == 8 and np.array(details["confusion_matrix"]).sum() == 8


@pytest.mark.slow
def test_an_independent_test_folder_reports_the_classes_it_lacks_and_averages_over_the_rest(
    trained: dict[str, Any], pbc8_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    folder = copy_images(pbc8_dir, tmp_path / "independent", {"neutrophil": 3, "basophil": 2, "platelet": 2})
    test = TRAINER.prepare_test_data(pbc8_dataset(pbc8_dir), str(folder), {}, cache_dir)
    assert test is not None and test.source == str(folder)
    assert test.summary["test_counts"] == {"basophil": 2, "neutrophil": 3, "platelet": 2}
    missing = ["eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte"]
    assert test.summary["missing_classes"] == missing
    details = TRAINER.evaluate_details(
        trained["workdir"] / "weights" / "best.pt",
        test,
        "test",
        trained["resolved"],
        TrialContext(workdir=tmp_path),
    )
    metrics = details["metrics"]
    assert details["missing_classes"] == missing and details["macro_over"] == [
        "basophil",
        "neutrophil",
        "platelet",
    ]
    assert "test/recall/neutrophil" in metrics and "test/recall/ig" not in metrics  # absent, not a 0
    present_f1 = [metrics[f"test/f1/{c}"] for c in details["macro_over"]]
    assert metrics["test/macro_f1"] == pytest.approx(np.mean(present_f1))
    matrix = np.array(details["confusion_matrix"])
    assert matrix.sum() == 7 and matrix[PBC8_CLASSES.index("neutrophil")].sum() == 3
    assert matrix[PBC8_CLASSES.index("ig")].sum() == 0


@pytest.mark.slow
def test_a_folder_with_splits_gives_its_test_folder_only(
    trained: dict[str, Any], pbc8_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    copy_images(pbc8_dir, tmp_path / "set" / "train", {"ig": 2})
    copy_images(pbc8_dir, tmp_path / "set" / "test", {"ig": 1, "monocyte": 1})
    test = TRAINER.prepare_test_data(pbc8_dataset(pbc8_dir), str(tmp_path / "set"), {}, cache_dir)
    assert test is not None and test.summary["test_counts"] == {"ig": 1, "monocyte": 1}
    metrics = TRAINER.evaluate(
        trained["workdir"] / "weights" / "best.pt",
        test,
        "test",
        trained["resolved"],
        TrialContext(workdir=tmp_path),
    )
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and "test/recall/monocyte" in metrics


def test_bad_test_sets_are_usage_errors_naming_what_is_wrong(
    pbc8_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    dataset = pbc8_dataset(pbc8_dir)
    missing = tmp_path / "nowhere"
    with pytest.raises(UsageError, match=f"test set not found: {missing}"):
        TRAINER.prepare_test_data(dataset, str(missing), {}, cache_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=str(tmp_path / "empty")):
        TRAINER.prepare_test_data(dataset, str(tmp_path / "empty"), {}, cache_dir)
    copy_images(pbc8_dir, tmp_path / "stranger", {"neutrophil": 1})
    (tmp_path / "stranger" / "neutrophil").rename(tmp_path / "stranger" / "megakaryocyte")
    with pytest.raises(UsageError, match="test set class 'megakaryocyte'"):
        TRAINER.prepare_test_data(dataset, str(tmp_path / "stranger"), {}, cache_dir)
    copy_images(pbc8_dir, tmp_path / "no_test" / "train", {"ig": 1})
    with pytest.raises(UsageError, match=r"declares splits .* but has no test/ folder"):
        TRAINER.prepare_test_data(dataset, str(tmp_path / "no_test"), {}, cache_dir)


def test_a_dataset_without_a_test_split_has_none_and_evaluating_it_names_the_dataset(
    pbc8_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    dataset = pbc8_dataset(
        pbc8_dir, max_images_per_class=3, train_fraction=0.67, val_fraction=0.33, test_fraction=0
    )
    assert TRAINER.prepare_test_data(dataset, None, {}, cache_dir) is None
    data = TRAINER.prepare_data(dataset, {}, cache_dir)
    with pytest.raises(UsageError, match=f"dataset {pbc8_dir} .* has no test split"):
        TRAINER.evaluate(
            tmp_path / "unused.pt", data, "test", params(data.path), TrialContext(workdir=tmp_path)
        )
    assert isinstance(data, PreparedData)
