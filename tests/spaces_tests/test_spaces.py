"""Search-space parsing, validation, presets, overrides and conversion to Optuna."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import REPO, SYNTHETIC, base_doc, write

from hemotune.config import Distribution
from hemotune.errors import SpaceValidationError, UsageError
from hemotune.spaces import (
    apply_sets,
    find_space_file,
    list_spaces,
    load_space,
    optuna_space,
    parse_yaml,
    space_dirs,
    space_document,
    to_optuna,
    validate_file,
    validate_space,
)


def problems_of(tmp_path: Path, doc: dict) -> list[str]:
    with pytest.raises(SpaceValidationError) as info:
        load_space(str(write(tmp_path, doc)))
    return info.value.problems


def test_shipped_spaces_all_validate_with_their_presets() -> None:
    shipped = sorted((REPO / "search_spaces").glob("*.yaml"))
    assert shipped, "search_spaces/ must hold the shipped spaces"
    for path in shipped:
        checked = validate_file(str(path))
        assert "preset smoke" in checked, path


def test_synthetic_space_converts_to_optuna(tmp_path: Path) -> None:
    space = load_space(str(write(tmp_path, base_doc(tmp_path))))
    dists = optuna_space(space)
    assert isinstance(dists["lr"], optuna.distributions.FloatDistribution)
    assert dists["lr"].log and dists["lr"].low == pytest.approx(1e-5)
    assert dists["plateau"].high == 1.0
    assert space.objective.metric == "val/score" and space.objective.mode == "max"
    assert space.points_to_evaluate == ({"lr": 0.01, "plateau": 1.0},)
    params = space.trial_params({"lr": 0.1, "plateau": 0.5})
    assert params["epochs"] == space.budget.epochs and params["seed"] == 7 and params["lr"] == 0.1


def test_int_categorical_and_step_distributions(tmp_path: Path) -> None:
    doc = base_doc(tmp_path)
    doc["parameters"]["fail_at_epoch"] = {"type": "int", "low": 0, "high": 4, "step": 2}
    doc["parameters"]["optimizer"] = {"type": "categorical", "choices": ["SGD", "AdamW"]}
    space = load_space(str(write(tmp_path, doc)))
    dists = optuna_space(space)
    assert dists["fail_at_epoch"] == optuna.distributions.IntDistribution(0, 4, step=2)
    assert dists["optimizer"] == optuna.distributions.CategoricalDistribution(["SGD", "AdamW"])
    by_name = {p.name: p for p in space.parameters}
    assert by_name["fail_at_epoch"].contains(2) and not by_name["fail_at_epoch"].contains(3)
    assert by_name["optimizer"].contains("SGD") and not by_name["optimizer"].contains("auto")


def test_space_document_validates_again_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, base_doc(tmp_path))
    space = load_space(str(path), preset="smoke", sets=["fixed.rate=0.5"])
    doc = space_document(space)
    assert not {"source", "source_hash", "preset", "overrides"} & set(doc)
    again = validate_space(doc, space.source, source_hash=space.source_hash)
    assert space_document(again) == doc and optuna_space(again) == optuna_space(space)
    shown = space_document(space, keep_preset=True)
    assert shown["preset"] == "smoke" and not {"source", "source_hash", "overrides"} & set(shown)


def test_to_optuna_and_distribution_invariants() -> None:
    dist = Distribution(name="lr", type="float", low=0.1, high=0.5, step=0.1)
    assert to_optuna(dist) == optuna.distributions.FloatDistribution(0.1, 0.5, step=0.1)
    assert dist.contains(0.3) and not dist.contains(0.35) and not dist.contains(True)
    with pytest.raises(ValueError, match="needs low and high"):
        Distribution(name="lr", type="float", low=0.1)
    with pytest.raises(ValueError, match="needs choices"):
        Distribution(name="optimizer", type="categorical", choices=())


def test_space_dirs_order_env_then_cwd_then_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEMOTUNE_SPACES_PATH", str(tmp_path / "mine"))
    monkeypatch.chdir(tmp_path)
    assert space_dirs() == [tmp_path / "mine", tmp_path / "search_spaces", REPO / "search_spaces"]
    assert set(list_spaces()) >= {p.stem for p in (REPO / "search_spaces").glob("*.yaml")}


def test_yaml_scientific_notation_reads_as_float() -> None:
    assert parse_yaml("a: 1e-3\nb: 5E+2\nc: 1.0e-4\nd: '1e-3'", "x") == {
        "a": 1e-3,
        "b": 500.0,
        "c": 1e-4,
        "d": "1e-3",
    }


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (
            lambda d: d["parameters"].update(momentum={"type": "float", "low": 0.1, "high": 0.9}),
            "parameters.momentum",
            "unknown parameter",
        ),
        (
            lambda d: d["parameters"]["plateau"].update(low=0.9, high=0.3),
            "parameters.plateau.low",
            "greater than high",
        ),
        (
            lambda d: d["parameters"]["lr"].update(low=0.0),
            "parameters.lr.low",
            "log-scaled range needs low > 0",
        ),
        (
            lambda d: d["parameters"].update(optimizer={"type": "categorical", "choices": ["SGD", "auto"]}),
            "parameters.optimizer.choices[1]",
            "allowed: SGD, Adam, AdamW",
        ),
        (lambda d: d["fixed"].update(optimizer="auto"), "fixed.optimizer", "not allowed"),
        (lambda d: d["dataset"].update(path="/no/such/dataset"), "dataset.path", "does not exist"),
        (lambda d: d["dataset"].pop("path"), "dataset.path", "is required"),
        (lambda d: d.update(trainer="nope"), "trainer", "available:"),
        (lambda d: d["objective"].update(metric="val/nothing"), "objective.metric", "allowed: val/score"),
        (lambda d: d["objective"].update(mode="up"), "objective.mode", "max or min"),
        (lambda d: d["budget"].update(grace_period=99), "budget.grace_period", "must not exceed"),
        (lambda d: d["budget"].update(reduction_factor=1), "budget.reduction_factor", "> 1"),
        (lambda d: d["resources"].update(gpu=1.5), "resources.gpu", "fraction"),
        (lambda d: d.update(epochs=3), "epochs", "unknown key"),
        (lambda d: d["fixed"].update(epochs=3), "fixed.epochs", "budget.epochs"),
        (lambda d: d["fixed"].update(lr=0.1), "parameters.lr", "either fixed or searched"),
        (lambda d: d["points_to_evaluate"].append({"lr": 5.0}), "points_to_evaluate[1].lr", "outside"),
        (
            lambda d: d["points_to_evaluate"].append({"rate": 5.0}),
            "points_to_evaluate[1].rate",
            "not a searched",
        ),
    ],
)
def test_malformed_spaces_name_the_key_and_what_is_allowed(
    tmp_path: Path, mutate, key: str, words: str
) -> None:
    doc = base_doc(tmp_path)
    mutate(doc)
    problems = problems_of(tmp_path, doc)
    matching = [p for p in problems if p.startswith(f"{key}:")]
    assert matching, problems
    assert any(words in p for p in matching), matching


def test_every_problem_is_reported_at_once_with_the_file_name(tmp_path: Path) -> None:
    doc = base_doc(tmp_path)
    doc["parameters"]["plateau"].update(low=0.9, high=0.3)
    doc["parameters"]["bogus"] = {"type": "float", "low": 1, "high": 2}
    path = write(tmp_path, doc)
    with pytest.raises(SpaceValidationError) as info:
        load_space(str(path))
    assert len(info.value.problems) == 2
    assert str(path) in str(info.value)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nparameters: {lr: [1, 2\n")
    with pytest.raises(SpaceValidationError) as info:
        load_space(str(path))
    assert "invalid YAML at line" in str(info.value) and str(path) in str(info.value)


def test_smoke_preset_and_sets_override_budget_without_editing_the_file(tmp_path: Path) -> None:
    doc = base_doc(tmp_path)
    doc["presets"] = {"smoke": {"budget": {"epochs": 2}, "fixed": {"rate": 2.0}}}
    path = write(tmp_path, doc)
    space = load_space(str(path), preset="smoke", sets=["budget.num_samples=3", "fixed.best_lr=1e-3"])
    assert space.budget.epochs == 2 and space.budget.num_samples == 3 and space.budget.grace_period == 1
    assert space.fixed["rate"] == 2.0 and space.fixed["best_lr"] == 1e-3
    assert space.preset == "smoke"
    assert load_space(str(path)).budget.epochs == 6
    with pytest.raises(SpaceValidationError, match="no such preset"):
        load_space(str(path), preset="huge")
    with pytest.raises(SpaceValidationError, match=r"expected key\.path=value"):
        apply_sets({}, ["novalue"], "x")


def test_cli_flags_override_data_and_budget(tmp_path: Path) -> None:
    space = load_space(str(SYNTHETIC), data=str(tmp_path), num_samples=2, max_concurrent=1)
    assert (
        space.dataset.path == str(tmp_path)
        and space.budget.num_samples == 2
        and space.budget.max_concurrent == 1
    )


def test_find_space_by_name_and_unknown_names_list_the_known_ones() -> None:
    assert "synthetic_test" not in list_spaces()  # tests/spaces is not on the search path
    with pytest.raises(UsageError, match="known:"):
        find_space_file("no_such_space")


def test_validate_space_rejects_non_mapping() -> None:
    with pytest.raises(SpaceValidationError, match="mapping"):
        validate_space(["a"], "x.yaml")
