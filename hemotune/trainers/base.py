"""The trainer contract: what every trainer declares and implements.

A trainer is Ray-free. It declares the parameters it accepts (so a search space
naming an unknown one fails before Ray starts), prepares its dataset once on the
driver, and trains one configuration with ``fit(params, report, context)``,
calling ``report`` after every epoch so a scheduler (ASHA) can stop it.

Trainer modules must not import torch, ultralytics or timm at module level:
the registry imports them to validate search spaces, and that must stay cheap.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

Metrics = dict[str, float]

#: The kinds a parameter may have, as written in YAML. ``list`` and ``mapping`` are for
#: structured options (class lists, class maps); subclasses of ``ParamSpec`` refine their checks.
PARAM_KINDS = ("float", "int", "str", "bool", "list", "mapping")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a trainer accepts.

    ``choices`` restricts the allowed values (an optimizer name, say); ``low`` and
    ``high`` are the inclusive physically meaningful bounds (a loss gain must be
    positive). ``searchable=False`` means it may only be fixed, not searched.
    """

    kind: str
    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    searchable: bool = True
    low_exclusive: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}; use one of {PARAM_KINDS}")

    def problems(self, value: Any) -> list[str]:
        """What is wrong with ``value`` for this parameter (empty when it is fine)."""
        if value is None:
            return ["must not be null"]
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return [f"must be a number, got {value!r}"]
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return [f"must be an integer, got {value!r}"]
        elif self.kind == "bool":
            if not isinstance(value, bool):
                return [f"must be true or false, got {value!r}"]
        elif self.kind == "str" and not isinstance(value, str):
            return [f"must be a string, got {value!r}"]
        elif self.kind == "list" and not isinstance(value, (list, tuple)):
            return [f"must be a list, got {value!r}"]
        elif self.kind == "mapping" and not isinstance(value, Mapping):
            return [f"must be a mapping, got {value!r}"]
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            return [f"{value!r} is not allowed; allowed: {allowed}"]
        if self.kind in ("float", "int"):
            if self.low is not None:
                if self.low_exclusive and value <= self.low:
                    return [f"must be > {self.low}, got {value!r}"]
                if not self.low_exclusive and value < self.low:
                    return [f"must be >= {self.low}, got {value!r}"]
            if self.high is not None and value > self.high:
                return [f"must be <= {self.high}, got {value!r}"]
        return []


@dataclass(frozen=True)
class TrialContext:
    """Where and how one trial runs; filled in by the tuning layer (or by a test)."""

    workdir: Path
    resume_from: Path | None = None
    device: str = "cpu"
    seed: int = 0
    trial_id: str = "local"
    num_workers: int = 0

    @classmethod
    def temporary(cls, **kwargs: Any) -> TrialContext:
        """A context in a fresh temporary directory, for use without Ray."""
        return cls(workdir=Path(tempfile.mkdtemp(prefix="hemotune-trial-")), **kwargs)


@dataclass(frozen=True)
class PreparedData:
    """A dataset made ready for trials: same path and fingerprint for every trial."""

    path: Path
    fingerprint: str
    source: str
    summary: Mapping[str, Any] = field(default_factory=dict)
    report_path: Path | None = None


class Report(Protocol):
    """Called by a trainer after every epoch.

    ``metrics`` must contain ``epoch`` (1-based). ``checkpoint`` is a directory
    holding everything needed to resume after this epoch. ``artifacts`` maps a
    name under the run's artifact root (``weights/best.pt``) to a file to log.
    """

    def __call__(
        self,
        metrics: Mapping[str, float],
        *,
        checkpoint: Path | None = None,
        artifacts: Mapping[str, Path] | None = None,
    ) -> None: ...


def null_report(
    metrics: Mapping[str, float],
    *,
    checkpoint: Path | None = None,
    artifacts: Mapping[str, Path] | None = None,
) -> None:
    """A ``report`` that discards everything (for running a trainer by hand)."""


class Trainer(ABC):
    """Base class of registered trainers.

    Subclasses set ``name``, ``task``, ``params``, ``dataset_options`` and
    ``metrics`` and implement ``prepare_data`` and ``fit``.
    """

    name: ClassVar[str]
    task: ClassVar[str]
    description: ClassVar[str] = ""
    params: ClassVar[Mapping[str, ParamSpec]]
    dataset_options: ClassVar[Mapping[str, ParamSpec]] = {}
    #: Metric names a trainer reports every epoch (objective candidates).
    metrics: ClassVar[Sequence[str]]
    #: Prefixes of per-class metric names (``val/AP50/`` + class name).
    metric_prefixes: ClassVar[Sequence[str]] = ()
    #: Dataset formats ``dataset.format`` may name.
    dataset_formats: ClassVar[Sequence[str]] = ("auto",)

    def validate(self, fixed: Mapping[str, Any], searched: Collection[str]) -> list[str]:
        """Cross-parameter problems (``fixed`` values plus the names being searched); none by default."""
        return []

    def is_known_metric(self, metric: str) -> bool:
        return metric in self.metrics or any(metric.startswith(p) for p in self.metric_prefixes)

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The values a trial really runs with, derived ones included (for logging)."""
        return dict(params)

    @abstractmethod
    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        """Validate and convert ``dataset`` once; the same call on any node gives the same result."""

    @abstractmethod
    def fit(
        self,
        params: Mapping[str, Any],
        report: Report,
        context: TrialContext | None = None,
    ) -> Metrics:
        """Train one configuration, reporting every epoch; return summary metrics."""
