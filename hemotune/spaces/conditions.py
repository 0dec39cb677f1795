"""``when:`` on a parameter: it exists in a trial only where its categorical parents took given values.

::

    class_weighting: {type: categorical, choices: [none, inverse_frequency, effective_number]}
    class_weight_beta: {type: categorical, choices: [0.99, 0.999], when: {class_weighting: effective_number}}

A condition names parents (searched categorical parameters) and, for each, one value
or a list of values. A parameter whose conditions do not hold is neither sampled (the
searcher runs Optuna's define-by-run space, ``hemotune.tuning.samplers``) nor logged
as an MLflow param; the trainer's default applies. No Optuna here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from hemotune.config import Distribution
from hemotune.spaces.checker import Checker


def check_conditions(
    check: Checker, raw: Mapping[str, Any], parameters: Sequence[Distribution]
) -> list[Distribution]:
    """``parameters`` with their validated ``when`` attached (a bad condition is recorded and dropped)."""
    specs: Mapping[str, Any] = raw["parameters"] if isinstance(raw.get("parameters"), Mapping) else {}
    by_name = {dist.name: dist for dist in parameters}
    out = []
    for dist in parameters:
        spec = specs.get(dist.name)
        when = spec.get("when") if isinstance(spec, Mapping) else None
        conditions = () if when is None else _check_when(check, dist.name, when, set(specs), by_name)
        out.append(dataclasses.replace(dist, when=conditions))
    for name in _cycle(out):
        check.add(f"parameters.{name}.when", "conditions form a cycle: a parameter cannot depend on itself")
    return out


def _check_when(
    check: Checker, name: str, when: Any, declared: set[str], by_name: Mapping[str, Distribution]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """One parameter's ``when`` mapping as ``((parent, allowed values), ...)``."""
    key = f"parameters.{name}.when"
    if not isinstance(when, Mapping) or not when:
        check.add(key, "must be a mapping parent -> value or list of values, e.g. {optimizer: SGD}")
        return ()
    conditions = []
    for parent, allowed in when.items():
        parent_key = f"{key}.{parent}"
        values = list(allowed) if isinstance(allowed, list) else [allowed]
        parent_dist = by_name.get(parent)
        if parent == name:
            check.add(parent_key, "a parameter cannot depend on itself")
        elif parent not in declared:
            check.add(parent_key, f"unknown parameter {parent!r}; searched: {', '.join(sorted(declared))}")
        elif parent_dist is None:
            continue  # its own distribution is invalid: already reported
        elif parent_dist.type != "categorical":
            check.add(
                parent_key,
                f"{parent} is a {parent_dist.type} parameter: a condition's parent must be categorical",
            )
        elif not values:
            check.add(parent_key, "needs at least one value")
        else:
            bad = [value for value in values if not parent_dist.contains(value)]
            if bad:
                check.add(
                    parent_key,
                    f"{', '.join(map(repr, bad))} is not a choice of {parent}; choices: {list(parent_dist.choices or ())}",
                )
            else:
                conditions.append((str(parent), tuple(values)))
    return tuple(conditions)


def _cycle(parameters: Sequence[Distribution]) -> list[str]:
    """Names of the parameters on a dependency cycle (empty when the conditions form a forest)."""
    try:
        activation_order(parameters)
    except ValueError as exc:
        return sorted(str(exc).split(","))
    return []


def activation_order(parameters: Sequence[Distribution]) -> list[Distribution]:
    """``parameters`` with every parent before its children (the order a define-by-run space suggests)."""
    names = _names(parameters)
    pending = list(parameters)
    placed: set[str] = set()
    order: list[Distribution] = []
    while pending:
        ready = [d for d in pending if all(p in placed for p, _ in d.when if p in names)]
        if not ready:
            raise ValueError(",".join(d.name for d in pending))
        for dist in ready:
            order.append(dist)
            placed.add(dist.name)
        pending = [d for d in pending if d.name not in placed]
    return order


def _names(parameters: Iterable[Distribution]) -> set[str]:
    return {d.name for d in parameters}


def active_values(parameters: Sequence[Distribution], values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` for parameters that exist given ``values`` (others dropped)."""
    kept: dict[str, Any] = {}
    for dist in activation_order(parameters):
        if dist.name in values and dist.is_active(kept):
            kept[dist.name] = values[dist.name]
    return {**{k: v for k, v in values.items() if k not in _names(parameters)}, **kept}


def drop_inactive_points(
    parameters: Sequence[Distribution], points: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Known points without values for parameters their own values make inactive (ignored, as in a trial)."""
    if not any(d.when for d in parameters):
        return list(points)
    return [active_values(parameters, point) for point in points]


def inactive_names(conditional: Collection[str], config: Mapping[str, Any]) -> set[str]:
    """The conditional parameters a trial's sampled ``config`` does not hold: not logged as params."""
    return {name for name in conditional if name not in config}
