"""A validated ``SearchSpace`` in other forms: Optuna distributions and a plain search-space document.

Optuna is imported only inside ``to_optuna``, so validating a space stays free of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hemotune.config import Distribution, SearchSpace

if TYPE_CHECKING:  # pragma: no cover
    from optuna.distributions import BaseDistribution


def to_optuna(dist: Distribution) -> BaseDistribution:
    """The Optuna distribution equivalent to ``dist`` (imports optuna)."""
    from optuna import distributions

    if dist.type == "categorical":
        return distributions.CategoricalDistribution(list(dist.choices or ()))
    low, high = dist.bounds
    if dist.type == "int":
        return distributions.IntDistribution(int(low), int(high), log=dist.log, step=int(dist.step or 1))
    return distributions.FloatDistribution(float(low), float(high), log=dist.log, step=dist.step)


def optuna_space(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Every searched parameter of ``space`` as an Optuna distribution, by name (the searcher's space)."""
    return {dist.name: to_optuna(dist) for dist in space.parameters}


def space_document(space: SearchSpace, *, keep_preset: bool = False) -> dict[str, Any]:
    """The validated space as a search-space document, without where it was read from.

    ``source``, ``source_hash`` and ``overrides`` are always dropped (the overlays are
    already applied); ``preset`` is kept only with ``keep_preset`` (``spaces show``
    names it). Without it, the document validates again as written (stored for
    ``--resume``).
    """
    doc = space.as_dict()
    dropped = (
        ("source", "source_hash", "overrides")
        if keep_preset
        else ("source", "source_hash", "preset", "overrides")
    )
    for key in dropped:
        doc.pop(key, None)
    return doc
