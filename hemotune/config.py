"""Typed, frozen settings: what to search (``SearchSpace``) and how/where to run it (``RunSettings``).

Objects here are plain data. ``hemotune.spaces`` builds a ``SearchSpace`` from a
YAML file after validating it (and converts its distributions to Optuna's);
``hemotune.tuning`` turns both into a Ray Tune run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Distribution:
    """One searched parameter, in Optuna's distribution vocabulary (``spaces.to_optuna`` converts it)."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    #: ``when:`` conditions, ``((parent, allowed values), ...)``: the parameter exists in a trial
    #: only where every parent took one of its allowed values (``hemotune.spaces.conditions``).
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def __post_init__(self) -> None:
        """A categorical parameter needs choices; a float or int one needs both bounds."""
        if self.type == "categorical" and not self.choices:
            raise ValueError(f"categorical parameter {self.name!r} needs choices")
        if self.type != "categorical" and (self.low is None or self.high is None):
            raise ValueError(f"{self.type} parameter {self.name!r} needs low and high")

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a float or int parameter."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} parameter {self.name!r} has no bounds")
        return self.low, self.high

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of this distribution (for known points)."""
        if self.type == "categorical":
            return value in (self.choices or ())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        low, high = self.bounds
        if not (low <= value <= high):
            return False
        if self.step is not None:
            steps = (value - low) / self.step
            return math.isclose(steps, round(steps), abs_tol=1e-9)
        return True

    def is_active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter exists in a trial whose other values are ``values``."""
        return all(parent in values and values[parent] in allowed for parent, allowed in self.when)

    def as_dict(self) -> dict[str, Any]:
        """The search-space file form: ``{type, low, high[, log][, step]}`` or ``{type, choices}``."""
        out: dict[str, Any]
        if self.type == "categorical":
            out = {"type": "categorical", "choices": list(self.choices or ())}
        else:
            out = {"type": self.type, "low": self.low, "high": self.high}
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {parent: list(allowed) for parent, allowed in self.when}
        return out


@dataclass(frozen=True)
class Objective:
    """The metric a search optimises and whether higher (``max``) or lower (``min``) is better."""

    metric: str
    mode: Literal["max", "min"]


@dataclass(frozen=True)
class Budget:
    """How much to search: trials, concurrency, epochs and ASHA's rungs."""

    num_samples: int
    max_concurrent: int
    epochs: int
    grace_period: int
    reduction_factor: float
    max_failures: int = 1
    time_budget_s: float | None = None
    #: End the search once a trial's objective reaches this value (``hemotune.tuning.schedulers``).
    target: float | None = None


@dataclass(frozen=True)
class Resources:
    """Per-trial resources; ``gpu`` may be fractional (0.25 lets four trials share a GPU)."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class DatasetConfig:
    """Where the data is (a local path or ``s3://bucket/prefix``) and trainer-specific options."""

    path: str
    format: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The ``dataset`` section: path, format and the options side by side."""
        return {"path": self.path, "format": self.format, **dict(self.options)}


#: The Tune config key naming a grid trial's arm (its point); never a trainer parameter.
ARM_KEY = "hemotune_arm"


@dataclass(frozen=True)
class GridArm:
    """One point of a grid search: its name (or index) and the values it sets."""

    name: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class SearchSettings:
    """The ``search:`` section: which Optuna sampler and Tune scheduler drive the search.

    ``grid_arms`` are the grid's points (explicit, or enumerated from the space);
    ``grid_points`` keeps the file's own form (``None``: enumerated) for round trips.
    """

    sampler: str = "tpe"
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    scheduler: str = "asha"
    scheduler_options: Mapping[str, Any] = field(default_factory=dict)
    grid_arms: tuple[GridArm, ...] = ()
    grid_points: Any = None
    grid_repeats: int = 1

    def as_dict(self) -> dict[str, Any]:
        """The section as written in a search-space file."""
        out: dict[str, Any] = {
            "sampler": self.sampler,
            "sampler_options": dict(self.sampler_options),
            "scheduler": self.scheduler,
            "scheduler_options": dict(self.scheduler_options),
        }
        if self.sampler == "grid":
            grid: dict[str, Any] = {"repeats": self.grid_repeats}
            if self.grid_points is not None:
                grid["points"] = self.grid_points
            out["grid"] = grid
        return out


@dataclass(frozen=True)
class AblationSettings:
    """The ``ablation:`` section: which grid arms are the baseline, the two factors and both together.

    A 2x2 ablation over a grid search's named points; at the search's end
    ``hemotune.evidence.analyse_ablation`` reports each arm's change and the synergy.
    """

    baseline: str
    factors: tuple[str, str]
    combined: str
    metrics: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "baseline": self.baseline,
            "factors": list(self.factors),
            "combined": self.combined,
        }
        if self.metrics:
            out["metrics"] = list(self.metrics)
        return out


@dataclass(frozen=True)
class SearchSpace:
    """A validated search: everything the tuning layer needs, nothing about where it runs."""

    name: str
    description: str
    trainer: str
    source: str
    source_hash: str
    dataset: DatasetConfig
    objective: Objective
    fixed: Mapping[str, Any]
    parameters: tuple[Distribution, ...]
    budget: Budget
    resources: Resources
    seed: int
    points_to_evaluate: tuple[Mapping[str, Any], ...] = ()
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    search: SearchSettings = field(default_factory=SearchSettings)
    ablation: AblationSettings | None = None
    #: ``objectives:`` of a multi-objective search (``objective`` is the first); empty for one objective.
    objectives: tuple[Objective, ...] = ()

    def trial_params(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The full parameter set of one trial: fixed values, sampled values, budget epochs, seed."""
        params: dict[str, Any] = {"seed": self.seed, **dict(self.fixed)}
        params.update(sampled)
        params["epochs"] = self.budget.epochs
        return params

    def as_dict(self) -> dict[str, Any]:
        """A plain-data form, logged as the resolved config."""
        return {
            "name": self.name,
            "description": self.description,
            "trainer": self.trainer,
            "source": self.source,
            "source_hash": self.source_hash,
            "preset": self.preset,
            "overrides": list(self.overrides),
            "dataset": self.dataset.as_dict(),
            **(
                {"objectives": [{"metric": o.metric, "mode": o.mode} for o in self.objectives]}
                if self.objectives
                else {"objective": {"metric": self.objective.metric, "mode": self.objective.mode}}
            ),
            "fixed": dict(self.fixed),
            "parameters": {p.name: p.as_dict() for p in self.parameters},
            "budget": asdict(self.budget),
            "resources": asdict(self.resources),
            "seed": self.seed,
            "points_to_evaluate": [dict(p) for p in self.points_to_evaluate],
            "search": self.search.as_dict(),
            **({"ablation": self.ablation.as_dict()} if self.ablation is not None else {}),
        }


def env_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: ``1/true/yes/on`` or ``0/false/no/off``; unset or anything else: ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return default


def default_cache_dir() -> Path:
    """Where converted datasets and hemotune's private settings live (``$HEMOTUNE_CACHE_DIR``)."""
    env = os.environ.get("HEMOTUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "hemotune").resolve()


@dataclass(frozen=True)
class RunSettings:
    """Where and how a search runs: storage, tracking, cluster, resume.

    ``results_dir`` is a local directory or a URI (``s3://bucket/prefix``) that Ray
    Tune uses as ``storage_path``. ``tracking_uri`` ``None`` means the embedded
    default: a SQLite store ``mlflow.db`` in ``local_dir``. ``experiment_name``
    names the Tune experiment (default ``<search>-<timestamp>``),
    ``mlflow_experiment`` the MLflow experiment (default: the search name).
    """

    results_dir: str = "hemotune_results"
    tracking_uri: str | None = None
    address: str | None = None
    resume: bool = False
    local_dir: Path = field(default_factory=lambda: Path("hemotune_results").resolve())
    cache_dir: Path = field(default_factory=default_cache_dir)
    experiment_name: str | None = None
    mlflow_experiment: str | None = None
    show_progress: bool = True
    show_trial_logs: bool = False
    num_cpus: int | None = None
    #: ``--resource-timeout``: seconds to wait for a cluster node that can hold a trial (None: the default).
    resource_timeout_s: float | None = None
