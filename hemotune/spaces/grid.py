"""The grid of ``sampler: grid``: its arms (named points, or the enumerated space) and seed repeats.

::

    search:
      sampler: grid
      grid:
        points:                 # optional: a list, or a mapping name -> point
          baseline: {box: 7.5, cls: 0.5}
          heavy_cls: {box: 7.5, cls: 2.0}
        repeats: 3              # seeds seed, seed+1, seed+2 for every point

Without ``points`` the grid is every combination of the categorical and stepped
(``int``, or ``float`` with ``step``) parameters; a continuous float makes it an error.
An explicit point names every searched parameter active in it (constant ones belong
under ``fixed``). The search runs exactly ``len(arms) * repeats`` trials.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from hemotune.config import Distribution, GridArm
from hemotune.spaces.checker import Checker
from hemotune.spaces.conditions import active_values

#: More grid points than this is a mistake (a step far too small), not a search.
MAX_GRID_POINTS = 10_000


def check_grid(
    check: Checker, section: Any, parameters: Sequence[Distribution], raw: Mapping[str, Any]
) -> tuple[tuple[GridArm, ...], Any, int]:
    """``(arms, points as written or None, repeats)`` of the ``search.grid`` section."""
    grid = check.mapping(section, "search.grid")
    check.unknown_keys(grid, "search.grid", ("points", "repeats"), "points, repeats")
    repeats = check.number(grid, "repeats", "search.grid", 1, integer=True, minimum=1)
    if raw.get("points_to_evaluate"):
        check.add("points_to_evaluate", "a grid runs exactly its points: list them under search.grid.points")
    points = grid.get("points")
    if points is None:
        return tuple(_enumerate(check, parameters)), None, repeats
    return tuple(_explicit(check, points, parameters)), points, repeats


def _explicit(check: Checker, points: Any, parameters: Sequence[Distribution]) -> list[GridArm]:
    """Arms of a list (named by index) or mapping (named by key) of points."""
    if isinstance(points, list):
        named = [(str(index), point) for index, point in enumerate(points)]
    elif isinstance(points, Mapping):
        named = [(str(name), point) for name, point in points.items()]
    else:
        check.add("search.grid.points", "must be a list of points or a mapping name -> point")
        return []
    if not named:
        check.add("search.grid.points", "needs at least one point")
    by_name = {dist.name: dist for dist in parameters}
    arms: list[GridArm] = []
    seen: dict[str, str] = {}
    for name, point in named:
        key = f"search.grid.points.{name}" if isinstance(points, Mapping) else f"search.grid.points[{name}]"
        if not isinstance(point, Mapping):
            check.add(key, "must be a mapping of parameter -> value")
            continue
        _check_point(check, key, point, by_name)
        signature = repr(sorted(point.items(), key=lambda item: str(item[0])))
        if signature in seen:
            check.add(key, f"is the same point as {seen[signature]}: repeat a point with search.grid.repeats")
        seen[signature] = name
        arms.append(GridArm(name=name, values=dict(point)))
    return arms


def _check_point(
    check: Checker, key: str, point: Mapping[str, Any], by_name: Mapping[str, Distribution]
) -> None:
    """Every value inside its distribution; every parameter active in the point named, no inactive one."""
    for name, value in point.items():
        dist = by_name.get(name)
        if dist is None:
            check.add(f"{key}.{name}", f"not a searched parameter; searched: {', '.join(by_name)}")
        elif not dist.contains(value):
            check.add(f"{key}.{name}", f"{value!r} is outside its distribution {dist.as_dict()}")
    active = active_values(list(by_name.values()), point)
    for name in point:
        if name in by_name and name not in active:
            check.add(f"{key}.{name}", "its when: condition is false in this point: leave it out")
    for dist in by_name.values():
        if dist.name not in point and dist.is_active(point):
            check.add(key, f"names no value for {dist.name} (a grid point names every searched parameter)")


def _enumerate(check: Checker, parameters: Sequence[Distribution]) -> list[GridArm]:
    """Every combination of the parameters' values (inactive ones dropped, duplicates removed)."""
    axes = []
    for dist in parameters:
        values = _values(dist)
        if values is None:
            check.add(
                f"parameters.{dist.name}",
                "a grid needs a finite set of values: give this float a step, "
                "or list points under search.grid.points",
            )
            return []
        axes.append(values)
    count = math.prod(len(values) for values in axes)
    if count > MAX_GRID_POINTS:
        check.add("search.grid", f"the grid has {count} points (over {MAX_GRID_POINTS}): use coarser steps")
        return []
    arms: list[GridArm] = []
    seen: set[str] = set()
    for combination in itertools.product(*axes):
        point = active_values(parameters, dict(zip((d.name for d in parameters), combination, strict=True)))
        name = ",".join(f"{k}={v}" for k, v in point.items())
        if name not in seen:
            seen.add(name)
            arms.append(GridArm(name=name, values=point))
    return arms


def _values(dist: Distribution) -> list[Any] | None:
    """The finite values of ``dist`` (``None`` for a continuous float)."""
    if dist.type == "categorical":
        return list(dist.choices or ())
    low, high = dist.bounds
    if dist.type == "int":
        step = int(dist.step or 1)
        return list(range(int(low), int(high) + 1, step))
    if dist.step is None:
        return None
    count = math.floor((high - low) / dist.step + 1e-9) + 1
    return [round(low + i * dist.step, 12) for i in range(count)]
