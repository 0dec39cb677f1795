"""``hemotune best --export`` on real training: the exported weights reproduce the logged best metrics.

A tiny real search per trainer (pbc8 classification; BCCD detection with the plumbing preset),
then the exported ``weights/best.pt`` is evaluated on the validation split with
``Trainer.evaluate``: every ``val/...`` metric it returns must equal the value the run logged at its best epoch,
and the objective its ``best/<objective>`` (within 1e-3, for classification and, as the
validator's rounding allows, for detection). Both searches run in one private local Ray
(``ray_session`` reuses a Ray its caller started): each costs its trials, not a Ray start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import mlflow_client

from hemotune.cli import main
from hemotune.config import RunSettings
from hemotune.spaces import load_space
from hemotune.trainers import TrialContext, get_trainer
from hemotune.tuning import run_search
from hemotune.tuning.session import ray_session

pytestmark = pytest.mark.usefixtures("shared_ray")

TINY_PBC = [
    "dataset.max_images_per_class=8",
    "dataset.cache_imgsz=32",
    "fixed.imgsz=32",
    "fixed.batch=8",
    "fixed.reference_batch=8",
    "parameters.model={type: categorical, choices: [resnet18]}",
    "budget.num_samples=2",
    "budget.epochs=2",
]


@pytest.fixture(scope="module")
def shared_ray() -> Iterator[None]:
    with ray_session(RunSettings(num_cpus=2)):
        yield


def _search_export_evaluate(
    space_name: str, preset: str, sets: list[str], data: Path, tmp_path: Path, cache_dir: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics of the exported weights on val, the best run's val metrics logged at its best epoch)."""
    space = load_space(space_name, preset=preset, sets=sets, data=str(data))
    results = tmp_path / "results"
    settings = RunSettings(
        results_dir=str(results), local_dir=results, num_cpus=2, show_progress=False, cache_dir=cache_dir
    )
    outcome = run_search(space, settings)
    assert outcome.best is not None
    out = tmp_path / "exported"
    assert main(["best", space.name, "--results-dir", str(results), "--export", str(out)]) == 0
    exported_metrics = json.loads((out / "metrics.json").read_text())
    assert exported_metrics["run_id"] == outcome.best.run_id
    exported = load_space(str(out / f"{space.name}_best.yaml"))
    trainer = get_trainer(exported.trainer)
    prepared = trainer.prepare_data(exported.dataset.as_dict(), exported.fixed, cache_dir)
    resolved = yaml.safe_load((out / "config" / "resolved.yaml").read_text())
    resolved["data"] = str(prepared.path)
    context = TrialContext.temporary(objective=space.objective.metric, mode=space.objective.mode)
    evaluated = trainer.evaluate(out / "weights" / "best.pt", prepared, "val", resolved, context)
    best_epoch = int(exported_metrics["metrics"]["best_epoch"])
    assert exported_metrics["metrics"][f"best/{space.objective.metric}"] == pytest.approx(
        evaluated[space.objective.metric], abs=1e-3
    )
    return evaluated, _logged_at(outcome.tracking_uri, outcome.best.run_id, list(evaluated), best_epoch)


def _logged_at(uri: str, run_id: str, keys: list[str], epoch: int) -> dict[str, float]:
    """The run's logged values of ``keys`` at step ``epoch`` (its best epoch)."""
    client = mlflow_client(uri)
    logged = {}
    for key in keys:
        values = [m.value for m in client.get_metric_history(run_id, key) if m.step == epoch]
        if values:
            logged[key] = values[-1]
    return logged


def _assert_reproduced(evaluated: dict[str, float], logged: dict[str, float], objective: str) -> None:
    assert objective in logged and len(logged) >= 3, (sorted(evaluated), sorted(logged))
    print({k: (round(evaluated[k], 5), round(v, 5)) for k, v in logged.items()})  # shown with -s
    for key, value in logged.items():
        assert evaluated[key] == pytest.approx(value, abs=1e-3), key


@pytest.mark.slow
def test_exported_classifier_reproduces_its_logged_best(
    pbc8_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    evaluated, logged = _search_export_evaluate(
        "pbc_class_weights", "smoke", TINY_PBC, pbc8_dir, tmp_path, cache_dir
    )
    _assert_reproduced(evaluated, logged, "val/macro_f1")


@pytest.mark.slow
def test_exported_detector_reproduces_its_logged_best(
    bccd_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    evaluated, logged = _search_export_evaluate(
        "bcd_loss_weights", "plumbing", ["budget.num_samples=1"], bccd_dir, tmp_path, cache_dir
    )
    _assert_reproduced(evaluated, logged, "val/mAP50-95")
