"""The shipped smoke presets learn: a user's first search must end with a ranking that means something.

The README's main command runs exactly as written (``bcd_loss_weights --preset smoke``, 4 trials x
6 epochs on all BCCD images at 128 px, about 2 minutes on 2 cores) and its best trial must detect
cells: val mAP50 >= 0.10, white cells (the large, easy class) better still. The classification smoke
presets run their known points (2 trials each, about 1 minute) and must end clearly above chance,
not at the constant predictor the earlier 2-epoch presets stopped at. Tests that only check the
plumbing use the ``plumbing`` presets instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import mlflow_client, search_tree

from hemotune.config import RunSettings
from hemotune.spaces import load_space
from hemotune.trainers import TrialContext
from hemotune.trainers.registry import get_trainer
from hemotune.tuning import run_search
from hemotune.tuning.session import ray_session

pytestmark = pytest.mark.slow

HEMOTUNE = Path(sys.executable).parent / "hemotune"
#: The README promises the whole first command, a ~3 minute install included, in 10 minutes.
SEARCH_BUDGET_S = 360.0


def _at_epoch(uri: str, run_id: str, key: str, epoch: int) -> float:
    """``key`` as logged at ``epoch`` (MLflow step = epoch): the best epoch's value, not the last."""
    history = mlflow_client(uri).get_metric_history(run_id, key)
    return next(m.value for m in history if m.step == epoch)


def test_the_readme_detection_smoke_search_learns(tmp_path: Path, bccd_dir: Path) -> None:
    results = tmp_path / "results"
    argv = [str(HEMOTUNE), "search", "bcd_loss_weights", "--preset", "smoke", "--data", str(bccd_dir)]
    started = time.monotonic()
    proc = subprocess.run(
        [*argv, "--results-dir", str(results), "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    print(proc.stdout[-3000:], f"search: {elapsed:.0f} s", sep="\n")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert elapsed < SEARCH_BUDGET_S, f"the README's smoke search took {elapsed:.0f} s"
    best = yaml.safe_load(next(results.glob("bcd_loss_weights-*/best/best_config.yaml")).read_text())
    uri, run_id, epoch = best["mlflow"]["tracking_uri"], best["mlflow"]["run_id"], best["objective"]["epoch"]
    map50 = _at_epoch(uri, run_id, "val/mAP50", epoch)
    wbc = _at_epoch(uri, run_id, "val/AP50/WBC", epoch)
    assert map50 >= 0.10, f"best trial's val/mAP50 {map50:.3f} at epoch {epoch}"
    assert wbc > map50, f"WBC AP50 {wbc:.3f} vs mAP50 {map50:.3f}"
    assert f"val/mAP50-95 = {best['objective']['value']:.4f}" in proc.stdout
    # a ranking, not a tie among zeros: 4 trials, and their best objectives differ
    _, children = search_tree(uri, "bcd_loss_weights")
    values = [run.data.metrics["best/val/mAP50-95"] for run in children]
    assert len(children) == 4 and len(set(values)) > 1 and max(values) > 0.05, values
    _recomputes_the_validators_map_per_image(best, bccd_dir, tmp_path / "evaluation")


def _recomputes_the_validators_map_per_image(best: dict[str, Any], bccd_dir: Path, workdir: Path) -> None:
    """The image bootstrap's ground, on a model that detects cells (the tiny trainer tests' models are at
    AP 0): ``objective_on_subset`` over every val image, from the per-image tp/conf/classes the evaluation
    saved, equals the validator's own mAP50-95 and mAP50, and a half of the images gives another value."""
    space = load_space("bcd_loss_weights", preset="smoke", data=str(bccd_dir))
    trainer = get_trainer(space.trainer)
    data = trainer.prepare_data(space.dataset.as_dict(), space.fixed, Path(os.environ["HEMOTUNE_CACHE_DIR"]))
    weights = next(Path(w) for w in best["weights"] if w.endswith("best.pt"))
    resolved = {**best["resolved"], "data": str(data.path)}
    details = trainer.evaluate_details(weights, data, "val", resolved, TrialContext(workdir=workdir))
    with np.load(details["per_image_file"], allow_pickle=False) as saved:
        stats = {k: saved[k] for k in saved.files}
    everything = np.arange(len(stats["images"]))
    assert len(everything) == details["images"] > 50
    for key in ("val/mAP50-95", "val/mAP50"):
        validator = details["metrics"][key]
        assert validator > 0.02, (key, validator)
        assert trainer.objective_on_subset(stats, key, everything) == pytest.approx(validator, abs=1e-6), key
    half = trainer.objective_on_subset(stats, "val/mAP50", everything[::2])
    assert half != pytest.approx(details["metrics"]["val/mAP50"], abs=1e-9)


@pytest.fixture(scope="module")
def shared_ray() -> Iterator[None]:
    """One private local Ray for both classification presets (``ray_session`` reuses a Ray its caller started)."""
    with ray_session(RunSettings(num_cpus=2)):
        yield


@pytest.mark.parametrize(
    ("name", "fixture", "least"),
    [
        # 8 classes: chance and the constant predictor are at macro-F1 0.03-0.125; measured 0.77
        ("pbc_class_weights", "pbc8_dir", 0.4),
        # 2 classes: the constant predictor is at macro-F1 0.33; measured 0.90
        ("all_leukemia", "leukemia_dir", 0.6),
    ],
)
def test_classification_smoke_presets_learn(
    shared_ray: None, tmp_path: Path, name: str, fixture: str, least: float, request: pytest.FixtureRequest
) -> None:
    """The smoke preset's first two trials (its known points and TPE's first sample), in parallel."""
    data = request.getfixturevalue(fixture)
    space = load_space(name, preset="smoke", data=str(data), num_samples=2, max_concurrent=2)
    settings = RunSettings(
        results_dir=str(tmp_path / "results"), local_dir=tmp_path / "results", num_cpus=2, show_progress=False
    )
    outcome = run_search(space, settings)
    assert outcome.best is not None and outcome.num_failed == 0
    best = mlflow_client(outcome.tracking_uri).get_run(outcome.best.run_id)
    f1 = best.data.metrics["best/val/macro_f1"]
    print(f"{name} smoke: best val/macro_f1 {f1:.3f} ({best.data.params['model']})")
    assert f1 >= least, f"{name} smoke preset's best val/macro_f1 {f1:.3f} < {least}"
