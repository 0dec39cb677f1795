"""The ``search:`` section, ``when:`` conditions and ``budget.target``: validated before Ray starts."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from helpers import base_doc, write

from hemotune.errors import SpaceValidationError
from hemotune.spaces import load_space, space_document, validate_space
from hemotune.spaces.checker import Checker
from hemotune.spaces.search_section import SAMPLER_OPTIONS, SCHEDULER_OPTIONS, check_sampler_objectives

CONDITIONAL = {
    "optimizer": {"type": "categorical", "choices": ["SGD", "Adam", "AdamW"]},
    "lr": {"type": "float", "low": 1.0e-4, "high": 0.1, "log": True},
    "plateau": {"type": "float", "low": 0.2, "high": 1.0, "when": {"optimizer": ["Adam", "AdamW"]}},
}


def _problems(tmp_path: Path, **updates: Any) -> str:
    doc = base_doc(tmp_path) | updates
    path = write(tmp_path, doc)
    with pytest.raises(SpaceValidationError) as info:
        load_space(str(path))
    message = str(info.value)
    assert str(path) in message  # every problem names the file
    return message


def _space(tmp_path: Path, **updates: Any) -> Any:
    return load_space(str(write(tmp_path, base_doc(tmp_path) | updates)))


def test_defaults_are_seeded_tpe_and_asha(tmp_path: Path) -> None:
    search = _space(tmp_path).search
    assert (search.sampler, search.scheduler, dict(search.sampler_options)) == ("tpe", "asha", {})


@pytest.mark.parametrize(
    ("search", "key"),
    [
        ({"sampler": "bayes"}, "search.sampler: unknown sampler 'bayes'"),
        ({"scheduler": "pbt"}, "search.scheduler: unknown scheduler 'pbt'"),
        ({"sampler": "tpe", "sampler_options": {"n_startup": 3}}, "search.sampler_options.n_startup"),
        ({"sampler_options": {"seed": 3}}, "search.sampler_options.seed"),
        ({"sampler_options": {"n_startup_trials": "3"}}, "must be an integer"),
        ({"sampler_options": {"group": True, "multivariate": False}}, "search.sampler_options.group"),
        ({"scheduler": "median", "scheduler_options": {"brackets": 2}}, "search.scheduler_options.brackets"),
        ({"scheduler_options": {"grace_period": 99}}, "search.scheduler_options.grace_period"),
        ({"scheduler_options": {"reduction_factor": 1}}, "search.scheduler_options.reduction_factor"),
        ({"grid": {"repeats": 2}}, "search.grid: is only for sampler: grid"),
        ({"samplr": "tpe"}, "search.samplr: unknown key"),
    ],
)
def test_invalid_search_sections_name_their_key(tmp_path: Path, search: dict, key: str) -> None:
    assert key in _problems(tmp_path, search=search)


def test_grid_needs_finite_values_and_counts_points_times_repeats(tmp_path: Path) -> None:
    assert "parameters.lr: a grid needs a finite set of values" in _problems(
        tmp_path, search={"sampler": "grid"}
    )
    parameters = {
        "optimizer": {"type": "categorical", "choices": ["SGD", "Adam"]},
        "fail_at_epoch": {"type": "int", "low": 0, "high": 4, "step": 2},
        "plateau": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25, "when": {"optimizer": "Adam"}},
    }
    space = _space(
        tmp_path,
        parameters=parameters,
        points_to_evaluate=[],
        search={"sampler": "grid", "grid": {"repeats": 2}},
    )
    # SGD x 3 fail_at_epoch + Adam x 3 fail_at_epoch x 3 plateau (plateau exists only for Adam)
    assert len(space.search.grid_arms) == 3 + 9
    assert space.budget.num_samples == 12 * 2
    assert "fail_at_epoch=0,optimizer=SGD" in {arm.name for arm in space.search.grid_arms}  # file order
    again = validate_space(space_document(space), "stored")  # the stored document round-trips
    assert again.search == space.search and again.budget == space.budget


def test_explicit_grid_points_are_checked(tmp_path: Path) -> None:
    grid = {
        "points": [
            {"optimizer": "SGD", "lr": 0.01, "plateau": 0.5},  # plateau is inactive for SGD
            {"optimizer": "Adam", "lr": 0.01},  # names no plateau
            {"optimizer": "Adam", "lr": 7.0, "plateau": 0.5},  # outside lr's range
            {"optimizer": "SGD", "lr": 0.01, "momentum": 0.9},  # not searched
        ]
    }
    message = _problems(
        tmp_path, parameters=CONDITIONAL, points_to_evaluate=[], search={"sampler": "grid", "grid": grid}
    )
    assert "search.grid.points[0].plateau: its when: condition is false" in message
    assert "search.grid.points[1]: names no value for plateau" in message
    assert "search.grid.points[2].lr: 7.0 is outside" in message
    assert "search.grid.points[3].momentum: not a searched parameter" in message
    assert "points_to_evaluate: a grid runs exactly its points" in _problems(
        tmp_path, search={"sampler": "grid", "grid": {"points": [{"lr": 0.01, "plateau": 1.0}]}}
    )


def test_named_grid_points_become_arms(tmp_path: Path) -> None:
    points = {
        "base": {"optimizer": "SGD", "lr": 0.01},
        "adam": {"optimizer": "Adam", "lr": 0.01, "plateau": 0.8},
    }
    space = _space(
        tmp_path,
        parameters=CONDITIONAL,
        points_to_evaluate=[],
        search={"sampler": "grid", "scheduler": "none", "grid": {"points": points, "repeats": 3}},
    )
    assert {arm.name: dict(arm.values) for arm in space.search.grid_arms} == points
    assert space.budget.num_samples == 6


def test_when_conditions_are_validated(tmp_path: Path) -> None:
    parameters = {
        **CONDITIONAL,
        "rate": {"type": "float", "low": 0.1, "high": 1.0, "when": {"missing": "x"}},
        "fail_at_epoch": {"type": "int", "low": 0, "high": 3, "when": {"lr": 0.01}},
        "best_lr": {"type": "float", "low": 0.001, "high": 0.1, "when": {"optimizer": "RMSprop"}},
    }
    message = _problems(tmp_path, parameters=parameters, fixed={}, points_to_evaluate=[])
    assert "parameters.rate.when.missing: unknown parameter 'missing'" in message
    assert (
        "parameters.fail_at_epoch.when.lr: lr is a float parameter: a condition's parent must be categorical"
        in message
    )
    assert "parameters.best_lr.when.optimizer: 'RMSprop' is not a choice of optimizer" in message


def test_known_points_drop_values_their_conditions_exclude(tmp_path: Path) -> None:
    space = _space(
        tmp_path,
        parameters=CONDITIONAL,
        points_to_evaluate=[
            {"optimizer": "SGD", "lr": 0.01, "plateau": 0.9},
            {"optimizer": "Adam", "lr": 0.01},
        ],
    )
    assert [dict(p) for p in space.points_to_evaluate] == [
        {"optimizer": "SGD", "lr": 0.01},
        {"optimizer": "Adam", "lr": 0.01},
    ]
    plateau = next(p for p in space.parameters if p.name == "plateau")
    assert plateau.when == (("optimizer", ("Adam", "AdamW")),)
    assert plateau.is_active({"optimizer": "AdamW"}) and not plateau.is_active({"optimizer": "SGD"})


def test_budget_target_is_a_number(tmp_path: Path) -> None:
    doc = base_doc(tmp_path)
    assert "budget.target: must be a number" in _problems(
        tmp_path, budget={**doc["budget"], "target": "high"}
    )
    assert _space(tmp_path, budget={**doc["budget"], "target": 0.65}).budget.target == 0.65


def test_multi_objective_hook_rejects_single_objective_samplers(tmp_path: Path) -> None:
    check = Checker("space.yaml")
    check_sampler_objectives(check, _space(tmp_path, search={"sampler": "cmaes"}).search, 2)
    check_sampler_objectives(check, _space(tmp_path, search={"sampler": "nsga2"}).search, 2)
    assert check.problems == [
        "search.sampler: cmaes optimises a single objective; with 2 objectives use tpe, nsga2, gp, random or grid"
    ]


def test_option_tables_match_the_installed_optuna_and_ray() -> None:
    import optuna
    from ray.tune import schedulers

    classes = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "gp": optuna.samplers.GPSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "grid": optuna.samplers.RandomSampler,
        "asha": schedulers.ASHAScheduler,
        "hyperband": schedulers.ASHAScheduler,  # asynchronous Hyperband
        "median": schedulers.MedianStoppingRule,
        "none": schedulers.FIFOScheduler,
    }
    for name, options in {**SAMPLER_OPTIONS, **SCHEDULER_OPTIONS}.items():
        accepted = set(inspect.signature(classes[name]).parameters)
        assert set(options) <= accepted, (name, set(options) - accepted)


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp", "cmaes", "nsga2"])
def test_every_sampler_pickles_and_goes_on_sampling_after_it(tmp_path: Path, sampler: str) -> None:
    """Tune pickles the searcher (with its sampler) when the Tuner is built and at every checkpoint.

    Optuna 5.1's NSGA-II keeps a thread lock and did not pickle (the CI run of 2026-12-02).
    """
    import pickle

    import optuna

    from hemotune.tuning.samplers import build_sampler

    options = {"population_size": 2} if sampler == "nsga2" else {}
    built = build_sampler(_space(tmp_path, search={"sampler": sampler, "sampler_options": options}))
    study = optuna.create_study(sampler=pickle.loads(pickle.dumps(built)))
    study.optimize(lambda t: (t.suggest_float("x", -1.0, 1.0) - 0.3) ** 2, n_trials=5)
    again = pickle.loads(pickle.dumps(study.sampler))  # with its state after sampling
    study.sampler = again
    study.optimize(lambda t: (t.suggest_float("x", -1.0, 1.0) - 0.3) ** 2, n_trials=3)
    assert len(study.trials) == 8 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert all(-1.0 <= t.params["x"] <= 1.0 for t in study.trials)
    if sampler == "nsga2":  # the study's keys stay Optuna's own, so old journals resume
        assert isinstance(again, optuna.samplers.NSGAIISampler)
        assert "NSGAIISampler:generation" in study.trials[-1].system_attrs
