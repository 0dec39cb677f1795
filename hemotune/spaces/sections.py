"""One validator per section of a search-space document.

Each ``check_<section>`` reads its section from the raw document, records every
problem on the ``Checker`` and returns the section's validated value (a stand-in
where it is invalid, so the remaining sections are still checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hemotune.config import Budget, DatasetConfig, Distribution, Objective, Resources
from hemotune.spaces.checker import Checker, is_number
from hemotune.spaces.distributions import check_distribution
from hemotune.storage import is_s3

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.trainers.base import Trainer

BUDGET_KEYS = (
    "num_samples",
    "max_concurrent",
    "epochs",
    "grace_period",
    "reduction_factor",
    "max_failures",
    "time_budget_s",
    "target",
)
#: Parameters hemotune fills in itself; a space sets them elsewhere.
RESERVED_PARAMS = {
    "data": "set the dataset with dataset.path (or --data)",
    "epochs": "set the number of epochs with budget.epochs",
    "seed": "set the seed with the top-level key seed",
}


def check_objective(check: Checker, raw: Mapping[str, Any], trainer: Trainer) -> Objective:
    """``objective``: a metric the trainer reports and ``max`` or ``min``."""
    section = check.mapping(raw.get("objective"), "objective")
    metric, mode = section.get("metric"), section.get("mode", "max")
    if not isinstance(metric, str) or not trainer.is_known_metric(metric):
        per_class = (
            f", or a per-class metric starting with {', '.join(trainer.metric_prefixes)}"
            if trainer.metric_prefixes
            else ""
        )
        check.add(
            "objective.metric",
            f"{metric!r} is not a metric trainer {trainer.name!r} reports; "
            f"allowed: {', '.join(trainer.metrics)}{per_class}",
        )
    if mode not in ("max", "min"):
        check.add("objective.mode", f"must be max or min, got {mode!r}")
    check.unknown_keys(section, "objective", ("metric", "mode"), "metric, mode")
    return Objective(metric=cast(str, metric), mode=mode)


def check_dataset(
    check: Checker, raw: Mapping[str, Any], trainer: Trainer, *, check_data: bool
) -> DatasetConfig:
    """``dataset``: a path (existing, unless on S3 or ``check_data`` is off) and the trainer's options."""
    section = check.mapping(raw.get("dataset"), "dataset")
    path = section.get("path")
    if not path or not isinstance(path, str):
        check.add("dataset.path", "is required: the dataset folder (or s3://bucket/prefix); pass --data PATH")
    elif check_data and not is_s3(path) and not Path(path).expanduser().exists():
        check.add("dataset.path", f"{path} does not exist (pass --data PATH to point at the dataset)")
    for key, message in trainer.dataset_problems(section):
        check.add(key, message)
    if isinstance(path, str) and not is_s3(path):
        path = str(Path(path).expanduser().resolve())
    options = {
        key: value
        for key, value in section.items()
        if key not in ("path", "format") and key in trainer.dataset_options
    }
    return DatasetConfig(path=cast(str, path), format=section.get("format", "auto"), options=options)


def check_fixed(check: Checker, raw: Mapping[str, Any], trainer: Trainer) -> dict[str, Any]:
    """``fixed``: parameters the trainer declares, each with a value it accepts."""
    fixed = dict(check.mapping(raw.get("fixed"), "fixed"))
    for key, value in fixed.items():
        if key in RESERVED_PARAMS:
            check.add(f"fixed.{key}", RESERVED_PARAMS[key])
        elif key not in trainer.params:
            check.add(
                f"fixed.{key}",
                f"unknown parameter for trainer {trainer.name!r}; allowed: {', '.join(sorted(trainer.params))}",
            )
        else:
            for problem in trainer.params[key].problems(value):
                check.add(f"fixed.{key}", problem)
    return fixed


def check_parameters(
    check: Checker, raw: Mapping[str, Any], trainer: Trainer, fixed: Mapping[str, Any]
) -> list[Distribution]:
    """``parameters``: searchable parameters of the trainer, not also fixed, each a valid distribution."""
    searchable = sorted(name for name, spec in trainer.params.items() if spec.searchable)
    parameters: list[Distribution] = []
    for name, spec in check.mapping(raw.get("parameters"), "parameters").items():
        key = f"parameters.{name}"
        if name in RESERVED_PARAMS:
            check.add(key, RESERVED_PARAMS[name])
        elif name not in searchable:
            check.add(
                key, f"unknown parameter for trainer {trainer.name!r}; searchable: {', '.join(searchable)}"
            )
        elif name in fixed:
            check.add(key, "is also under fixed: a parameter is either fixed or searched")
        else:
            dist = check_distribution(check, name, spec, trainer.params[name])
            if dist is not None:
                parameters.append(dist)
    return parameters


def check_budget(check: Checker, raw: Mapping[str, Any]) -> Budget:
    """``budget``: positive counts, ``grace_period <= epochs`` and ``reduction_factor > 1``."""
    section = check.mapping(raw.get("budget"), "budget")
    check.unknown_keys(section, "budget", BUDGET_KEYS, ", ".join(BUDGET_KEYS))
    epochs = check.number(section, "epochs", "budget", 10, integer=True, minimum=1)
    grace = check.number(section, "grace_period", "budget", 1, integer=True, minimum=1)
    if isinstance(grace, int) and isinstance(epochs, int) and grace > epochs:
        check.add("budget.grace_period", f"({grace}) must not exceed budget.epochs ({epochs})")
    return Budget(
        num_samples=check.number(section, "num_samples", "budget", 8, integer=True, minimum=1),
        max_concurrent=check.number(section, "max_concurrent", "budget", 1, integer=True, minimum=1),
        epochs=epochs,
        grace_period=grace,
        reduction_factor=check.number(section, "reduction_factor", "budget", 3, minimum=1, exclusive=True),
        max_failures=check.number(section, "max_failures", "budget", 1, integer=True, minimum=0),
        time_budget_s=check.number(section, "time_budget_s", "budget", None, minimum=0, exclusive=True),
        target=check.number(section, "target", "budget", None),
    )


def check_resources(check: Checker, raw: Mapping[str, Any]) -> Resources:
    """``resources``: CPUs per trial and GPUs (a fraction of one, or whole GPUs)."""
    section = check.mapping(raw.get("resources"), "resources")
    check.unknown_keys(section, "resources", ("cpu", "gpu"), "cpu, gpu")
    gpu = check.number(section, "gpu", "resources", 0, minimum=0)
    if is_number(gpu) and gpu > 1 and gpu != int(gpu):
        check.add("resources.gpu", f"a fraction of a GPU must be <= 1; above 1 use whole GPUs, got {gpu}")
    cpu = check.number(section, "cpu", "resources", 1, minimum=0, exclusive=True)
    return Resources(cpu=cpu, gpu=gpu)


def check_seed(check: Checker, raw: Mapping[str, Any]) -> int:
    """``seed``: an integer (default 0)."""
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        check.add("seed", f"must be an integer, got {seed!r}")
        return 0
    return seed


def check_points(
    check: Checker, raw: Mapping[str, Any], parameters: list[Distribution]
) -> list[Mapping[str, Any]]:
    """``points_to_evaluate``: known points whose values lie in the searched distributions."""
    points_raw = raw.get("points_to_evaluate") or []
    by_name = {dist.name: dist for dist in parameters}
    declared = set(raw["parameters"]) if isinstance(raw.get("parameters"), Mapping) else set()
    if not isinstance(points_raw, list):
        check.add("points_to_evaluate", "must be a list of mappings of parameter -> value")
        return []
    points: list[Mapping[str, Any]] = []
    for index, point in enumerate(points_raw):
        key = f"points_to_evaluate[{index}]"
        if not isinstance(point, Mapping):
            check.add(key, "must be a mapping of parameter -> value")
            continue
        for name, value in point.items():
            if name in declared and name not in by_name:
                continue  # its distribution is invalid: already reported
            if name not in by_name:
                check.add(f"{key}.{name}", f"not a searched parameter; searched: {', '.join(by_name)}")
            elif not by_name[name].contains(value):
                check.add(f"{key}.{name}", f"{value!r} is outside its distribution {by_name[name].as_dict()}")
        points.append(dict(point))
    return points
