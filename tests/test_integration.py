"""End to end: the shipped search spaces, real data, real Ray + Optuna + MLflow + trainers.

Each test runs a 2-trial x 2-epoch search of a shipped space (its plumbing preset, shrunk
further) and checks what a user would check in the MLflow UI: one parent run, one
nested child run per trial with its sampled params, a finite per-epoch history of the
objective, the trial's best weights and (classification) confusion matrices. One private
local Ray serves the module (``ray_session`` reuses a Ray its caller started): each search
costs its trials, not a Ray start; starting a local Ray is tested by tests/test_offline.py
and tests/tuning_tests/test_launch.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import mlflow_client, search_tree

from hemotune.config import RunSettings
from hemotune.spaces import load_space
from hemotune.tuning import SearchOutcome, run_search
from hemotune.tuning.session import ray_session

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray")]


@pytest.fixture(scope="module")
def shared_ray() -> Iterator[None]:
    with ray_session(RunSettings(num_cpus=2)):
        yield


def _run(tmp_path: Path, name: str, data: Path, sets: list[str]) -> tuple[SearchOutcome, Any]:
    space = load_space(name, preset="plumbing", data=str(data), num_samples=2, max_concurrent=2, sets=sets)
    settings = RunSettings(
        results_dir=str(tmp_path / "results"), local_dir=tmp_path / "results", num_cpus=2, show_progress=False
    )
    return run_search(space, settings), space


def _history(uri: str, run_id: str, key: str) -> list[Any]:
    return sorted(mlflow_client(uri).get_metric_history(run_id, key), key=lambda m: m.step)


def _artifacts(uri: str, run_id: str, path: str = "") -> list[str]:
    return [a.path for a in mlflow_client(uri).list_artifacts(run_id, path)]


def _check_tree(outcome: SearchOutcome, space: Any, params: list[str]) -> list[Any]:
    parent, children = search_tree(outcome.tracking_uri, space.name)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["hemotune.best_run_id"] == outcome.best.run_id
    assert math.isfinite(parent.data.metrics[f"best/{space.objective.metric}"])
    assert len(children) == 2
    metric = space.objective.metric
    for run in children:
        assert run.info.status == "FINISHED"
        for name in params:
            assert name in run.data.params, (name, sorted(run.data.params))
        history = _history(outcome.tracking_uri, run.info.run_id, metric)
        assert [m.step for m in history] == [1, 2]
        assert all(math.isfinite(m.value) for m in history)
        assert math.isfinite(run.data.metrics[f"best/{metric}"])
        assert "config" in _artifacts(outcome.tracking_uri, run.info.run_id)
    assert not outcome.interrupted and outcome.num_failed == 0
    return children


def test_bcd_loss_weights_detection_search_end_to_end(tmp_path: Path, bccd_dir: Path) -> None:
    outcome, space = _run(
        tmp_path,
        "bcd_loss_weights",
        bccd_dir,
        ["dataset.max_train_images=16", "dataset.max_val_images=8", "fixed.imgsz=64"],
    )
    children = _check_tree(
        outcome,
        space,
        ["box", "cls", "dfl", "accumulate_steps", "optimizer", "base_lr", "lr0", "effective_batch"],
    )
    # the two known points ran first: Ultralytics' defaults and the study's recipe
    assert sorted(int(r.data.params["accumulate_steps"]) for r in children) == [4, 8]
    assert sorted(int(r.data.params["effective_batch"]) for r in children) == [16, 32]
    for run in children:
        for key in ("val/mAP50", "val/precision", "val/recall", "train/box_loss", "lr"):
            assert all(
                math.isfinite(m.value) for m in _history(outcome.tracking_uri, run.info.run_id, key)
            ), key
    best_files = _artifacts(outcome.tracking_uri, outcome.best.run_id, "weights")
    assert best_files == ["weights/best.pt"]
    parent, _ = search_tree(outcome.tracking_uri, space.name)
    local = Path(
        mlflow_client(outcome.tracking_uri).download_artifacts(parent.info.run_id, "data", str(tmp_path))
    )
    report = json.loads((local / "data_report.json").read_text())
    zero_size = [i for i in report["issues"] if "zero" in i["problem"]]
    assert zero_size, report["summary"]  # BloodImage_00338/00343 have zero-size boxes
    assert (outcome.best_dir / "best_config.yaml").exists()
    assert (outcome.best_dir / "weights" / "best.pt").exists()


@pytest.mark.parametrize(
    ("name", "fixture", "extra"),
    [
        ("pbc_class_weights", "pbc8_dir", ["dataset.max_images_per_class=8"]),
        ("all_leukemia", "leukemia_dir", ["dataset.max_images_per_class=16"]),
    ],
)
def test_classification_searches_end_to_end(
    tmp_path: Path, name: str, fixture: str, extra: list[str], request: pytest.FixtureRequest
) -> None:
    data = request.getfixturevalue(fixture)
    outcome, space = _run(tmp_path, name, data, extra)
    children = _check_tree(outcome, space, ["model", "optimizer", "base_lr", "lr", "effective_batch"])
    for run in children:
        for key in (
            "val/accuracy",
            "val/balanced_accuracy",
            "val/cohen_kappa",
            "val/min_class_recall",
            "val/loss",
        ):
            assert all(
                math.isfinite(m.value) for m in _history(outcome.tracking_uri, run.info.run_id, key)
            ), key
    artifacts = _artifacts(outcome.tracking_uri, outcome.best.run_id)
    assert "confusion_matrix.png" in artifacts and "confusion_matrix.json" in artifacts
    if name == "all_leukemia":
        best = mlflow_client(outcome.tracking_uri).get_run(outcome.best.run_id)
        assert math.isfinite(best.data.metrics["val/specificity"])
        assert math.isfinite(best.data.metrics["val/sensitivity"])
        # the study's recipe is the first trial
        models = sorted(r.data.params["model"] for r in children)
        assert "yolo11n-cls" in models


def test_a_search_exports_the_weights_of_its_best_epoch_by_a_non_default_objective(
    tmp_path: Path, pbc8_dir: Path
) -> None:
    """Objective ``val/loss`` (min), not the trainer's ``val/macro_f1``: the exported best.pt is the lowest-loss epoch."""
    import torch

    sets = ["dataset.max_images_per_class=8", "objective.metric=val/loss", "objective.mode=min"]
    space = load_space(
        "pbc_class_weights",
        preset="plumbing",
        data=str(pbc8_dir),
        num_samples=1,
        max_concurrent=1,
        sets=[*sets, "budget.epochs=3"],
    )
    settings = RunSettings(
        results_dir=str(tmp_path / "results"), local_dir=tmp_path / "results", num_cpus=2, show_progress=False
    )
    outcome = run_search(space, settings)
    assert outcome.best is not None and outcome.best_dir is not None
    losses = {m.step: m.value for m in _history(outcome.tracking_uri, outcome.best.run_id, "val/loss")}
    assert sorted(losses) == [1, 2, 3]
    lowest = min(losses, key=lambda epoch: losses[epoch])
    assert outcome.best.best_epoch == lowest and outcome.best.best_value == losses[lowest]
    run = mlflow_client(outcome.tracking_uri).get_run(outcome.best.run_id)
    assert run.data.metrics["best/val/loss"] == losses[lowest] and run.data.metrics["best_epoch"] == lowest
    weights = torch.load(outcome.best_dir / "weights" / "best.pt", map_location="cpu", weights_only=False)
    assert weights["epoch"] == lowest and weights["best_metric"] == "val/loss"
    assert weights["score"] == pytest.approx(losses[lowest])
