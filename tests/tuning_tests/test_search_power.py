"""Real searches over the synthetic trainer with every sampler and scheduler, a grid, conditions and a target.

One private local Ray serves the whole module (``ray_session`` reuses a Ray its caller
started), so each search costs its trials, not a Ray start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import mlflow_client, search_tree, synthetic_space_file

from hemotune.config import RunSettings
from hemotune.results import read_trials
from hemotune.spaces import load_space
from hemotune.tuning import SearchOutcome, run_search
from hemotune.tuning.samplers import JOURNAL_FILE, STUDY_NAME
from hemotune.tuning.schedulers import hyperband_brackets
from hemotune.tuning.session import ray_session

pytestmark = pytest.mark.slow

#: plateau exists only for Adam: the conditional parameter every search here carries.
PARAMETERS = {
    "optimizer": {"type": "categorical", "choices": ["SGD", "Adam"]},
    "lr": {"type": "float", "low": 1.0e-3, "high": 0.1, "log": True},
    "plateau": {"type": "float", "low": 0.5, "high": 1.0, "when": {"optimizer": "Adam"}},
}
BUDGET = {"num_samples": 4, "max_concurrent": 2, "epochs": 2, "grace_period": 1, "reduction_factor": 2}


@pytest.fixture(scope="module")
def shared_ray() -> Iterator[None]:
    with ray_session(RunSettings(num_cpus=2)):
        yield


def _search(tmp: Path, name: str, search: dict[str, Any], **updates: Any) -> tuple[SearchOutcome, Any]:
    path = synthetic_space_file(
        tmp,
        name=name,
        fixed={"seconds_per_epoch": 0.0},
        parameters=updates.pop("parameters", PARAMETERS),
        budget={**BUDGET, **updates.pop("budget", {})},
        points_to_evaluate=updates.pop("points_to_evaluate", None),
        search=search,
        **updates,
    )
    space = load_space(str(path))
    settings = RunSettings(
        results_dir=str(tmp / "results"), local_dir=tmp / "results", num_cpus=2, show_progress=False
    )
    return run_search(space, settings), space


def _study(outcome: SearchOutcome) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = Path(outcome.experiment_path) / JOURNAL_FILE
    return optuna.load_study(study_name=STUDY_NAME, storage=JournalStorage(JournalFileBackend(str(journal))))


def _children(outcome: SearchOutcome) -> dict[str, Any]:
    """trial id -> its MLflow child run."""
    _, children = search_tree(outcome.tracking_uri, outcome.name)
    return {c.data.tags["hemotune.trial_id"]: c for c in children}


def _assert_conditional_logging(outcome: SearchOutcome) -> None:
    """Adam runs hold plateau as a param; SGD runs have no value for it."""
    children = _children(outcome)
    for trial in outcome.ranking:
        params = children[trial.trial_id].data.params
        assert params["optimizer"] == trial.params["optimizer"]
        if trial.params["optimizer"] == "Adam":
            assert float(params["plateau"]) == pytest.approx(trial.params["plateau"])
        else:
            assert "plateau" not in params and "plateau" not in trial.params


@pytest.mark.parametrize(
    ("sampler", "options"),
    [
        ("tpe", {"n_startup_trials": 2, "constant_liar": True}),
        ("random", {}),
        ("gp", {"n_startup_trials": 2}),
        ("cmaes", {"n_startup_trials": 1}),
        ("nsga2", {"population_size": 2}),
    ],
)
def test_every_sampler_runs_a_real_search(
    shared_ray: None, tmp_path: Path, sampler: str, options: dict[str, Any]
) -> None:
    outcome, space = _search(
        tmp_path, f"{sampler}_test", {"sampler": sampler, "sampler_options": options, "scheduler": "none"}
    )
    assert len(outcome.ranking) == 4 and not outcome.interrupted
    assert all(t.outcome == "completed" for t in outcome.ranking), outcome.ranking
    assert (
        len({round(t.params["lr"], 9) for t in outcome.ranking}) >= 3
    )  # sampled (NSGA-II may copy a parent)
    for trial in outcome.ranking:
        assert 1.0e-3 <= trial.params["lr"] <= 0.1
    _assert_conditional_logging(outcome)
    # The journal holds the study: one trial per Tune trial, same params, value = the last epoch's.
    study = _study(outcome)
    assert len(study.trials) == 4
    records = {r.trial_id: r for r in read_trials(outcome.experiment_path, space)}
    by_params = {tuple(sorted(t.params.items())): t for t in study.trials}
    children = _children(outcome)
    for record in records.values():
        ot = by_params[tuple(sorted(record.config.items()))]
        assert ot.state.name == "COMPLETE"
        assert ot.value == pytest.approx(record.history[-1]["val/score"])
        logged = children[record.trial_id].data.params  # and MLflow's child run agrees
        assert {k: logged[k] for k in ot.params} == {k: str(v) for k, v in ot.params.items()}


def test_grid_runs_exactly_its_points_times_repeats(shared_ray: None, tmp_path: Path) -> None:
    points = {
        "sgd": {"optimizer": "SGD", "lr": 0.01},
        "adam": {"optimizer": "Adam", "lr": 0.01, "plateau": 0.8},
        "adam_slow": {"optimizer": "Adam", "lr": 0.002, "plateau": 0.8},
    }
    outcome, space = _search(
        tmp_path,
        "grid_test",
        {"sampler": "grid", "scheduler": "none", "grid": {"points": points, "repeats": 2}},
        budget={"num_samples": 99},  # a grid's trial count is its points x repeats
    )
    assert space.budget.num_samples == 6
    cells = {(t.params["hemotune_arm"], t.params["seed"]) for t in outcome.ranking}
    assert len(outcome.ranking) == 6
    assert cells == {(arm, seed) for arm in points for seed in (space.seed, space.seed + 1)}
    for trial in outcome.ranking:
        point = points[trial.params["hemotune_arm"]]
        assert {k: trial.params[k] for k in point} == point
    children = _children(outcome)
    for trial in outcome.ranking:
        run = children[trial.trial_id]
        assert run.data.tags["hemotune.arm"] == trial.params["hemotune_arm"]
        assert int(run.data.params["seed"]) == trial.params["seed"]
        assert "hemotune_arm" not in run.data.params
    _assert_conditional_logging(outcome)
    assert sorted((t.params["hemotune_arm"], t.params["seed"]) for t in _study(outcome).trials) == sorted(
        cells
    )


def test_median_rule_stops_bad_trials(shared_ray: None, tmp_path: Path) -> None:
    good = {"optimizer": "SGD", "lr": 0.01}
    bad = {"optimizer": "SGD", "lr": 0.001}
    outcome, _ = _search(
        tmp_path,
        "median_test",
        {"sampler": "random", "scheduler": "median", "scheduler_options": {"min_samples_required": 1}},
        budget={"epochs": 4, "max_concurrent": 1},
        # one after the other, each compared with the running means of those before it
        points_to_evaluate=[good | {"lr": 0.011}, good, bad, bad | {"lr": 0.0011}],
    )
    by_lr = {round(t.params["lr"], 4): t for t in outcome.ranking}
    assert by_lr[0.011].epochs == 4 and by_lr[0.01].epochs == 4  # the first, and a better one
    assert by_lr[0.001].outcome == by_lr[0.0011].outcome == "stopped early"
    assert max(by_lr[0.001].epochs, by_lr[0.0011].epochs) < 4
    assert not outcome.interrupted


def test_hyperband_runs_every_bracket_to_a_clean_end(shared_ray: None, tmp_path: Path) -> None:
    outcome, space = _search(
        tmp_path, "hyperband_test", {"sampler": "random", "scheduler": "hyperband"}, budget={"epochs": 4}
    )
    assert hyperband_brackets(space.budget.epochs, 1, 2) == 3  # rungs at 1, 2 and 4 epochs
    assert len(outcome.ranking) == 4 and not outcome.interrupted
    assert {t.outcome for t in outcome.ranking} <= {"completed", "stopped early"}
    assert outcome.best is not None and outcome.best.epochs == 4


def test_target_ends_the_search_when_reached(shared_ray: None, tmp_path: Path) -> None:
    good = {"optimizer": "SGD", "lr": 0.01}
    outcome, space = _search(
        tmp_path,
        "target_test",
        {"sampler": "random", "scheduler": "none"},
        budget={"num_samples": 8, "max_concurrent": 1, "epochs": 4, "target": 0.6},
        points_to_evaluate=[good],
    )
    # The known point scores 0.9 * (1 - e^(-0.6 epoch)): 0.41 at epoch 1, 0.63 at epoch 2, when
    # the search ends: that trial stops there and no other starts.
    assert len(outcome.ranking) == 1 and space.budget.num_samples == 8
    best = outcome.best
    assert best is not None and best.best_value == pytest.approx(0.6289, abs=1e-3) and best.epochs == 2
    assert not outcome.interrupted  # reaching the target finishes the search
    parent, _ = search_tree(outcome.tracking_uri, outcome.name)
    assert mlflow_client(outcome.tracking_uri).get_run(parent.info.run_id).info.status == "FINISHED"
