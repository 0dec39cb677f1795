"""The ``search:`` section: which Optuna sampler and which Ray Tune scheduler drive a search.

::

    search:
      sampler: tpe              # tpe (default) | random | gp | cmaes | nsga2 | grid
      sampler_options: {}       # keyword arguments of the Optuna sampler (its seed is the space's)
      scheduler: asha           # asha (default) | hyperband | median | none
      scheduler_options: {}     # keyword arguments of the Tune scheduler
      grid: {points: ..., repeats: 1}   # grid only

Options are checked here against tables of the samplers' and schedulers' keyword
arguments (plain-data ones only; ``tests/spaces_tests/test_search_section.py`` checks
the tables against the installed Optuna and Ray), so a typo fails before Ray starts
without importing either. A grid runs exactly ``points x repeats`` trials: its
``budget.num_samples`` is that product (``hemotune.spaces.grid``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

from hemotune.config import Budget, Distribution, GridArm, SearchSettings
from hemotune.spaces.checker import Checker, is_number
from hemotune.spaces.grid import check_grid

_INT, _NUM, _BOOL, _STR, _MAP = int, (int, float), bool, str, dict
#: sampler -> its plain-data keyword arguments and their types (``seed`` comes from the space).
SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {
    "tpe": {
        "prior_weight": _NUM,
        "consider_magic_clip": _BOOL,
        "consider_endpoints": _BOOL,
        "n_startup_trials": _INT,
        "n_ei_candidates": _INT,
        "multivariate": _BOOL,
        "group": _BOOL,
        "constant_liar": _BOOL,
    },
    "random": {},
    "gp": {"n_startup_trials": _INT, "deterministic_objective": _BOOL, "warn_independent_sampling": _BOOL},
    "cmaes": {
        "x0": _MAP,
        "sigma0": _NUM,
        "n_startup_trials": _INT,
        "warn_independent_sampling": _BOOL,
        "consider_pruned_trials": _BOOL,
        "popsize": _INT,
        "inc_popsize": _INT,
        "use_separable_cma": _BOOL,
        "with_margin": _BOOL,
        "lr_adapt": _BOOL,
    },
    "nsga2": {"population_size": _INT, "mutation_prob": _NUM, "crossover_prob": _NUM, "swapping_prob": _NUM},
    "grid": {},
}
#: scheduler -> its keyword arguments (``time_attr``, ``metric``, ``mode``, ``max_t`` come from the space).
SCHEDULER_OPTIONS: dict[str, dict[str, Any]] = {
    "asha": {"grace_period": _INT, "reduction_factor": _NUM, "brackets": _INT, "stop_last_trials": _BOOL},
    # asynchronous Hyperband: ASHA with every Hyperband bracket (hemotune.tuning.schedulers)
    "hyperband": {
        "grace_period": _INT,
        "reduction_factor": _NUM,
        "brackets": _INT,
        "stop_last_trials": _BOOL,
    },
    "median": {
        "grace_period": _NUM,
        "min_samples_required": _INT,
        "min_time_slice": _INT,
        "hard_stop": _BOOL,
    },
    "none": {},
}
#: Samplers that optimise one objective only (Optuna's CmaEsSampler raises on several):
#: the multi-objective check rejects them (``check_sampler_objectives``).
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
#: Samplers that need an optional package, and how to install it.
SAMPLER_PACKAGES = {
    "gp": (("torch", "scipy"), "pip install 'hemotune[classification]'"),
    "cmaes": (("cmaes",), "pip install cmaes"),
}
SEARCH_KEYS = ("sampler", "sampler_options", "scheduler", "scheduler_options", "grid")


def check_search(
    check: Checker, raw: Mapping[str, Any], parameters: Sequence[Distribution], budget: Budget
) -> SearchSettings:
    """The ``search`` section validated (defaults: seeded multivariate TPE and ASHA, as before it existed)."""
    section = check.mapping(raw.get("search"), "search")
    check.unknown_keys(section, "search", SEARCH_KEYS, ", ".join(SEARCH_KEYS))
    sampler = _choice(check, section, "sampler", "tpe", SAMPLER_OPTIONS)
    scheduler = _choice(check, section, "scheduler", "asha", SCHEDULER_OPTIONS)
    sampler_options = _options(check, section, "sampler_options", SAMPLER_OPTIONS.get(sampler, {}), sampler)
    scheduler_options = _options(
        check, section, "scheduler_options", SCHEDULER_OPTIONS.get(scheduler, {}), scheduler
    )
    _check_packages(check, sampler)
    _check_combinations(check, sampler_options, scheduler_options, budget)
    arms: tuple[GridArm, ...] = ()
    points, repeats = None, 1
    if sampler == "grid":
        arms, points, repeats = check_grid(check, section.get("grid"), parameters, raw)
    elif section.get("grid") is not None:
        check.add("search.grid", "is only for sampler: grid")
    return SearchSettings(
        sampler=sampler,
        sampler_options=sampler_options,
        scheduler=scheduler,
        scheduler_options=scheduler_options,
        grid_arms=arms,
        grid_points=points,
        grid_repeats=repeats,
    )


def check_sampler_objectives(check: Checker, search: SearchSettings, num_objectives: int) -> None:
    """A search with several objectives needs a sampler that handles them (hook for ``objectives:``)."""
    if num_objectives > 1 and search.sampler in SINGLE_OBJECTIVE_SAMPLERS:
        check.add(
            "search.sampler",
            f"{search.sampler} optimises a single objective; with {num_objectives} objectives use "
            "tpe, nsga2, gp, random or grid",
        )


def _choice(
    check: Checker, section: Mapping[str, Any], key: str, default: str, table: Mapping[str, Any]
) -> str:
    """``section[key]``, one of ``table``'s keys (``default`` when absent or invalid)."""
    value = section.get(key, default)
    if value not in table:
        check.add(f"search.{key}", f"unknown {key} {value!r}; allowed: {', '.join(table)}")
        return default
    return str(value)


def _options(
    check: Checker, section: Mapping[str, Any], key: str, allowed: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """``section[key]``: keyword arguments ``owner`` takes, each of the type it takes."""
    options = dict(check.mapping(section.get(key), f"search.{key}"))
    for name in sorted(options):
        value = options[name]
        if name == "seed":
            check.add(f"search.{key}.seed", "the sampler's seed is the space's: set the top-level key seed")
        elif name not in allowed:
            listed = ", ".join(allowed) or "none"
            check.add(f"search.{key}.{name}", f"not an option of {owner}; allowed: {listed}")
        elif not _is_type(value, allowed[name]):
            check.add(f"search.{key}.{name}", f"must be {_type_name(allowed[name])}, got {value!r}")
    return options


def _is_type(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is dict:
        return isinstance(value, Mapping)
    if kind is str:
        return isinstance(value, str)
    return is_number(value) and (kind is not int or isinstance(value, int))


def _type_name(kind: Any) -> str:
    return {bool: "true or false", dict: "a mapping", str: "a string", int: "an integer"}.get(
        kind, "a number"
    )


def _check_packages(check: Checker, sampler: str) -> None:
    """A sampler whose optional package is not installed fails here, not after Ray started."""
    packages, hint = SAMPLER_PACKAGES.get(sampler, ((), ""))
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        check.add("search.sampler", f"{sampler} needs {', '.join(missing)}: {hint}")


def _check_combinations(
    check: Checker, sampler_options: Mapping[str, Any], scheduler_options: Mapping[str, Any], budget: Budget
) -> None:
    """Option values Optuna or Tune would refuse only once the search started."""
    if sampler_options.get("group") is True and sampler_options.get("multivariate") is False:
        check.add("search.sampler_options.group", "needs multivariate: true (Optuna's TPE rule)")
    grace: Any = scheduler_options.get("grace_period")
    if is_number(grace) and not 0 <= grace <= budget.epochs:
        check.add(
            "search.scheduler_options.grace_period", f"must be within 0..budget.epochs ({budget.epochs})"
        )
    factor: Any = scheduler_options.get("reduction_factor")
    if is_number(factor) and factor <= 1:
        check.add("search.scheduler_options.reduction_factor", f"must be > 1, got {factor}")
    for key in ("brackets", "min_samples_required"):
        value = scheduler_options.get(key)
        if isinstance(value, int) and value < 1:
            check.add(f"search.scheduler_options.{key}", f"must be >= 1, got {value}")
