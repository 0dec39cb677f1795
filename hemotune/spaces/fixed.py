"""A search space with every value fixed: one trial of a finished search, to reproduce or retrain it.

``hemotune best --export`` writes one: the search's stored space with the winning
values moved from ``parameters`` into ``fixed``, no known points, one sample, and
the trial's seed. ``hemotune search`` runs such a space as a single trial (with no
searched parameter there is nothing for Optuna to sample; Tune runs the fixed
configuration). Raise ``budget.epochs`` with ``--set`` to retrain at full budget.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

#: Keys of a stored space document that say where it was read from, not what it is.
_PROVENANCE = ("source", "source_hash", "preset", "overrides")


def logged_value(spec: Mapping[str, Any], text: str) -> Any:
    """The value of a searched parameter from its MLflow param text (MLflow stores ``str(value)``).

    A categorical value is the choice whose text matches (so ``True`` stays a bool and
    ``"8"`` an int when the choices say so); a number is parsed by its distribution's type.
    """
    kind = spec.get("type")
    if kind == "categorical":
        for choice in spec.get("choices") or ():
            if str(choice) == text:
                return choice
        raise ValueError(f"{text!r} is none of the choices {list(spec.get('choices') or ())}")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return yaml.safe_load(text)


def single_trial_document(
    document: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    name: str,
    seed: int | None = None,
    description: str = "",
) -> dict[str, Any]:
    """``document`` (a stored space) with ``values`` fixed, nothing searched and one trial.

    A ``search`` section's grid (its points name searched parameters) is dropped, and a
    grid sampler with it: one fixed configuration needs neither.
    """
    doc = {k: copy.deepcopy(v) for k, v in document.items() if k not in _PROVENANCE}
    doc["name"] = name
    if description:
        doc["description"] = description
    doc["fixed"] = {**dict(doc.get("fixed") or {}), **dict(values)}
    doc["parameters"] = {}
    doc["points_to_evaluate"] = []
    budget = dict(doc.get("budget") or {})
    budget.update(num_samples=1, max_concurrent=1)
    budget.pop("time_budget_s", None)
    doc["budget"] = budget
    if seed is not None:
        doc["seed"] = int(seed)
    search = doc.get("search")
    if isinstance(search, dict):
        search.pop("grid", None)
        if search.get("sampler") == "grid":
            search.pop("sampler")
            search.pop("sampler_options", None)
    return doc
