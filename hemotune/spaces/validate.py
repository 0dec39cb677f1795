"""``validate_space``: a parsed search-space document checked section by section into a ``SearchSpace``.

Everything is checked against the trainer's declared parameters before Ray starts;
every problem is reported at once, each naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hemotune.config import SearchSpace
from hemotune.errors import SpaceValidationError
from hemotune.spaces.ablation import check_ablation
from hemotune.spaces.checker import Checker
from hemotune.spaces.conditions import check_conditions, drop_inactive_points
from hemotune.spaces.objectives import check_objective_sections
from hemotune.spaces.overlays import TOP_LEVEL_KEYS
from hemotune.spaces.search_section import check_sampler_objectives, check_search
from hemotune.spaces.sections import (
    check_budget,
    check_dataset,
    check_fixed,
    check_parameters,
    check_points,
    check_resources,
    check_seed,
)

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.trainers.base import Trainer

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NOT_A_MAPPING = "the file must hold a YAML mapping (key: value lines)"


def _check_header(check: Checker, raw: Mapping[str, Any], source: str) -> tuple[str, str]:
    """Unknown top-level keys, the search's ``name`` (default: the file's stem) and ``description``."""
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            check.add(str(key), f"unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    name = raw.get("name") or Path(source).stem
    if not isinstance(name, str) or not _NAME_RE.match(name):
        check.add("name", f"must be letters, digits, '_', '.', '-', got {name!r}")
        name = "search"
    return name, str(raw.get("description") or "").strip()


def _check_trainer(check: Checker, raw: Mapping[str, Any]) -> Trainer:
    """The registered trainer ``raw`` names; an unknown one stops validation (nothing else can be checked)."""
    from hemotune.trainers import available_trainers, get_trainer

    name = raw.get("trainer")
    if name not in available_trainers():
        check.add("trainer", f"unknown trainer {name!r}; available: {', '.join(available_trainers())}")
        check.raise_if_any()
    return get_trainer(cast(str, name))


def validate_space(
    raw: Any,
    source: str,
    *,
    source_hash: str = "",
    check_data: bool = True,
    preset: str | None = None,
    overrides: Sequence[str] = (),
) -> SearchSpace:
    """Validate a parsed search-space document and build a ``SearchSpace``.

    ``check_data`` off skips the dataset-path existence check (``spaces validate``
    checks files on machines without the data); ``preset`` and ``overrides`` are
    recorded on the result, already applied to ``raw``.
    """
    if not isinstance(raw, Mapping):
        raise SpaceValidationError(source, [NOT_A_MAPPING])
    check = Checker(source)
    name, description = _check_header(check, raw, source)
    trainer = _check_trainer(check, raw)
    objective, objectives = check_objective_sections(check, raw, trainer)
    dataset = check_dataset(check, raw, trainer, check_data=check_data)
    fixed = check_fixed(check, raw, trainer)
    parameters = check_conditions(check, raw, check_parameters(check, raw, trainer, fixed))
    for problem in trainer.validate(fixed, [dist.name for dist in parameters]):
        check.add("fixed", problem)
    budget = check_budget(check, raw)
    resources = check_resources(check, raw)
    seed = check_seed(check, raw)
    points = drop_inactive_points(parameters, check_points(check, raw, parameters))
    search = check_search(check, raw, parameters, budget)
    check_sampler_objectives(check, search, len(objectives))
    if search.sampler == "grid":  # a grid runs exactly its points x repeats
        budget = dataclasses.replace(budget, num_samples=max(1, len(search.grid_arms) * search.grid_repeats))
    ablation = check_ablation(check, raw, search, objective, trainer)
    if not isinstance(raw.get("presets") or {}, Mapping):
        check.add("presets", "must be a mapping of preset name -> overrides")
    check.raise_if_any()
    return SearchSpace(
        name=name,
        description=description,
        trainer=trainer.name,
        source=source,
        source_hash=source_hash,
        dataset=dataset,
        objective=objective,
        fixed=fixed,
        parameters=tuple(parameters),
        budget=budget,
        resources=resources,
        seed=seed,
        points_to_evaluate=tuple(points),
        preset=preset,
        overrides=tuple(overrides),
        search=search,
        ablation=ablation,
        objectives=objectives,
    )
