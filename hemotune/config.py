"""Typed, frozen settings: what to search (``SearchSpace``) and how/where to run it (``RunSettings``).

Objects here are plain data. ``hemotune.spaces`` builds a ``SearchSpace`` from a
YAML file after validating it; ``hemotune.tuning`` turns both into a Ray Tune run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from optuna.distributions import BaseDistribution


@dataclass(frozen=True)
class Distribution:
    """One searched parameter, in Optuna's distribution vocabulary."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def to_optuna(self) -> BaseDistribution:
        """The equivalent Optuna distribution (imports optuna)."""
        from optuna import distributions as d

        if self.type == "categorical":
            assert self.choices is not None
            return d.CategoricalDistribution(list(self.choices))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return d.FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of this distribution (for known points)."""
        if self.type == "categorical":
            assert self.choices is not None
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        assert self.low is not None and self.high is not None
        if not (self.low <= value <= self.high):
            return False
        if self.step is not None:
            steps = (value - self.low) / self.step
            return math.isclose(steps, round(steps), abs_tol=1e-9)
        return True

    def as_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices or ())}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Objective:
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
        return {"path": self.path, "format": self.format, **dict(self.options)}


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

    def optuna_space(self) -> dict[str, BaseDistribution]:
        return {p.name: p.to_optuna() for p in self.parameters}

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
            "objective": {"metric": self.objective.metric, "mode": self.objective.mode},
            "fixed": dict(self.fixed),
            "parameters": {p.name: p.as_dict() for p in self.parameters},
            "budget": {
                "num_samples": self.budget.num_samples,
                "max_concurrent": self.budget.max_concurrent,
                "epochs": self.budget.epochs,
                "grace_period": self.budget.grace_period,
                "reduction_factor": self.budget.reduction_factor,
                "max_failures": self.budget.max_failures,
                "time_budget_s": self.budget.time_budget_s,
            },
            "resources": {"cpu": self.resources.cpu, "gpu": self.resources.gpu},
            "seed": self.seed,
            "points_to_evaluate": [dict(p) for p in self.points_to_evaluate],
        }


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
