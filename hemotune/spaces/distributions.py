"""The ``parameters.<name>`` validator: one searched parameter becomes a ``Distribution``.

A distribution is checked on its own (keys, bounds, log and step as Optuna allows
them) and against the trainer's ``ParamSpec`` (its kind, and every bound or
choice must be a value the trainer accepts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from hemotune.config import Distribution
from hemotune.spaces.checker import Checker, is_number

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.trainers.base import ParamSpec

#: The keys each distribution type may hold (``when`` is checked by ``hemotune.spaces.conditions``).
DISTRIBUTION_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}


def check_distribution(check: Checker, name: str, spec: Any, param: ParamSpec) -> Distribution | None:
    """The distribution ``spec`` declares for ``name``, or ``None`` after recording its problems."""
    key = f"parameters.{name}"
    if not isinstance(spec, Mapping):
        check.add(
            key,
            "must be a mapping like {type: float, low: 0.1, high: 1.0} or {type: categorical, choices: [...]}",
        )
        return None
    kind = spec.get("type")
    if kind not in DISTRIBUTION_KEYS:
        check.add(f"{key}.type", f"must be one of float, int, categorical; got {kind!r}")
        return None
    allowed = DISTRIBUTION_KEYS[kind]
    for extra in sorted(set(spec) - allowed):
        check.add(f"{key}.{extra}", f"not a key of a {kind} parameter; allowed: {', '.join(sorted(allowed))}")
    if kind == "categorical":
        return _categorical(check, name, spec, param)
    return _numeric(check, name, kind, spec, param)


def _categorical(check: Checker, name: str, spec: Mapping[str, Any], param: ParamSpec) -> Distribution | None:
    """A categorical distribution: a non-empty list of distinct values the trainer accepts."""
    key = f"parameters.{name}.choices"
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        check.add(key, "must be a non-empty list")
        return None
    if len({repr(choice) for choice in choices}) != len(choices):
        check.add(key, f"has duplicates: {choices}")
    for index, choice in enumerate(choices):
        for problem in param.problems(choice):
            check.add(f"{key}[{index}]", problem)
    return Distribution(name=name, type="categorical", choices=tuple(choices))


def _numeric(
    check: Checker, name: str, kind: Literal["float", "int"], spec: Mapping[str, Any], param: ParamSpec
) -> Distribution | None:
    """A float or int range whose type fits the trainer's parameter and whose bounds it accepts."""
    key = f"parameters.{name}"
    if param.kind not in ("float", "int"):
        check.add(f"{key}.type", f"{name} takes {param.kind} values: use type: categorical with choices")
        return None
    if kind == "float" and param.kind == "int":
        check.add(f"{key}.type", f"{name} is an integer parameter: use type: int")
        return None
    low, high = spec.get("low"), spec.get("high")
    log, step = spec.get("log", False), spec.get("step")
    if not _well_formed(check, key, kind, spec) or low is None or high is None:
        return None
    ok = _consistent(check, key, kind, low, high, log, step)
    for bound_key, bound in (("low", low), ("high", high)):
        for problem in param.problems(bound):
            check.add(f"{key}.{bound_key}", problem)
            ok = False
    if not ok:
        return None
    return Distribution(name=name, type=kind, low=low, high=high, log=log, step=step)


def _well_formed(check: Checker, key: str, kind: str, spec: Mapping[str, Any]) -> bool:
    """Bounds present and numbers (integers for ``int``), ``log`` a bool, ``step`` positive."""
    ok = True
    for bound_key in ("low", "high"):
        bound = spec.get(bound_key)
        if bound is None:
            check.add(f"{key}.{bound_key}", "is required")
            ok = False
        elif not is_number(bound) or (kind == "int" and not isinstance(bound, int)):
            check.add(
                f"{key}.{bound_key}",
                f"must be {'an integer' if kind == 'int' else 'a number'}, got {bound!r}",
            )
            ok = False
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        check.add(f"{key}.log", f"must be true or false, got {log!r}")
        ok = False
    if step is not None and (not is_number(step) or step <= 0):
        check.add(f"{key}.step", f"must be a positive number, got {step!r}")
        ok = False
    return ok


def _consistent(check: Checker, key: str, kind: str, low: Any, high: Any, log: bool, step: Any) -> bool:
    """The range is not empty, a log scale starts above 0 and Optuna allows the step with it."""
    ok = True
    if low > high:
        check.add(f"{key}.low", f"low ({low}) is greater than high ({high})")
        ok = False
    if log and low <= 0:
        check.add(f"{key}.low", f"a log-scaled range needs low > 0, got {low}")
        ok = False
    if log and step is not None and kind == "float":
        check.add(f"{key}.step", "Optuna does not allow step together with log for float parameters")
        ok = False
    return ok
