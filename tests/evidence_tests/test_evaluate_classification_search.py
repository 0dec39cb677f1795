"""Acceptance: ``hemotune evaluate`` on a tiny classification search, tested on an independent pbc8 folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import search_tree

from hemotune.cli import main

CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet")
#: pbc_class_weights' smoke preset shrunk to seconds: 8 images per class at 32 px, 1 epoch, 2 trials.
TINY = [
    "--preset",
    "smoke",
    "--set",
    "dataset.max_images_per_class=8",
    "--set",
    "dataset.cache_imgsz=32",
    "--set",
    "fixed.imgsz=32",
    "--set",
    "budget.num_samples=2",
    "--set",
    "budget.epochs=1",
    "--set",
    "budget.grace_period=1",
]


def independent_test_set(pbc8_dir: Path, target: Path, per_class: int = 3) -> Path:
    """``target/<class>/``: the last ``per_class`` pbc8 images of each class (by name), outside training."""
    for name in CLASSES:
        (target / name).mkdir(parents=True, exist_ok=True)
        for src in sorted((pbc8_dir / "all" / name).glob("*.jpg"))[-per_class:]:
            shutil.copyfile(src, target / name / src.name)
    return target


@pytest.mark.slow
def test_evaluate_classification_search_on_an_independent_test_folder(
    pbc8_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEMOTUNE_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "results"
    common = ["--results-dir", str(results), "--num-cpus", "2"]
    search = ["search", "pbc_class_weights", "--data", str(pbc8_dir), "--no-progress", *TINY, *common]
    assert main(search) == 0
    test_set = independent_test_set(pbc8_dir, tmp_path / "pbc8_test")
    capsys.readouterr()

    argv = ["evaluate", "pbc_class_weights", "--top", "1", "--seeds", "2", "--test", str(test_set), *common]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "## Per seed" in out and "## Mean over seeds (95% t interval)" in out
    assert "## Compared with the baseline (baseline), paired by seed" in out

    parent, children = search_tree(f"sqlite:///{results / 'mlflow.db'}", "pbc_class_weights")
    evaluation = [c for c in children if c.data.tags["hemotune.role"] == "evaluation"]
    assert len(evaluation) == 4 and all(c.info.status == "FINISHED" for c in evaluation)
    assert parent.data.tags["hemotune.evaluation"].startswith("evaluation-")
    assert all(0.0 <= c.data.metrics["test/macro_f1"] <= 1.0 for c in evaluation)
    doc = json.loads(next(results.glob("pbc_class_weights-*/evaluation.json")).read_text())
    assert doc["objective"] == "test/macro_f1" and doc["seeds"] == [0, 1]
    assert doc["test"] == str(test_set)
    for arm in doc["arms"].values():
        assert set(arm["per_seed"]) == {"0", "1"}
        logged = {r: c.data.metrics["test/macro_f1"] for c in evaluation for r in [c.info.run_id]}
        assert [arm["per_seed"][s]["test/macro_f1"] for s in ("0", "1")] == [
            logged[arm["run_ids"][s]] for s in ("0", "1")
        ]
        assert arm["summary"]["test/macro_f1"]["n"] == 2
    (comparison,) = doc["comparisons"].values()
    verdict = comparison["verdict"]
    assert verdict.startswith(("better than", "worse than", "not distinguishable")), verdict
    assert "test/accuracy" in comparison["differences"]
    # the classifier's per-image labels and predictions make the paired bootstrap over test images
    # available, of the objective itself: its point estimate is the median seed's test macro-F1
    # difference over the 24 images, recomputed by scikit-learn as training computes it
    images = comparison["bootstrap_images"]
    assert images["available"] and images["images"] == 24 and images["statistic"] == "test/macro_f1", images
    seed = str(images["seed"])
    (name,) = doc["comparisons"]
    f1 = {a: doc["arms"][a]["per_seed"][seed]["test/macro_f1"] for a in (name, doc["baseline"])}
    assert abs(images["candidate"] - f1[name]) < 1e-9 and abs(images["baseline"] - f1[doc["baseline"]]) < 1e-9
    assert abs(images["mean"] - (f1[name] - f1[doc["baseline"]])) < 1e-9
    assert images["low"] <= images["mean"] <= images["high"]
