"""The trainer contract: what every trainer declares and implements.

A trainer is Ray-free. It declares the parameters it accepts (so a search space
naming an unknown one fails before Ray starts), prepares its dataset once on the
driver, and trains one configuration. The tuning layer calls ``resolve(params)``
once per trial (defaults and derived values, logged as the trial's parameters),
then ``train(resolved, report, context)``, which calls ``report`` after every
epoch so a scheduler (ASHA) can stop it; ``fit(params, report)`` does both, for
running a trainer by hand. The best epoch and ``weights/best.pt`` follow the
search objective named in the ``TrialContext`` (see ``hemotune.trainers.best``).
``evaluate`` scores weights on a ``val`` or ``test`` split under the val metrics'
names, and ``prepare_test_data`` finds that test split (docs/evaluation.md, "Test splits").

Trainer modules must not import torch, ultralytics or timm at module level:
the registry imports them to validate search spaces, and that must stay cheap.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from hemotune.data.prepared import PreparedData  # re-exported: trainers build it in prepare_data
from hemotune.errors import UsageError
from hemotune.trainers.best import MODES, BestEpoch

Metrics = dict[str, float]
#: A parameter set as ``resolve`` returns it (what ``train`` and ``evaluate`` receive).
Resolved = Mapping[str, Any]

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


#: The parameters every trainer accepts, declared once: each trainer's ``params`` includes them.
COMMON_PARAMS: Mapping[str, ParamSpec] = {
    "epochs": ParamSpec("int", "number of epochs", low=1, searchable=False),
    "seed": ParamSpec("int", "random seed", searchable=False),
    "data": ParamSpec("str", "prepared dataset folder (from prepare_data)", searchable=False),
}


@dataclass(frozen=True)
class TrialContext:
    """Where and how one trial runs; filled in by the tuning layer (or by a test).

    ``objective`` and ``mode`` are the search objective: the metric, and whether
    higher (``max``) or lower (``min``) is better, by which the trainer picks its best
    epoch and ``weights/best.pt``. ``None`` means the trainer's own default.
    """

    workdir: Path
    resume_from: Path | None = None
    device: str = "cpu"
    seed: int = 0
    trial_id: str = "local"
    num_workers: int = 0
    objective: str | None = None
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @classmethod
    def temporary(cls, **kwargs: Any) -> TrialContext:
        """A context in a fresh temporary directory, for use without Ray."""
        return cls(workdir=Path(tempfile.mkdtemp(prefix="hemotune-trial-")), **kwargs)

    def best_epoch(self, default_metric: str, default_mode: str = "max") -> BestEpoch:
        """An empty best-epoch record for the search objective, else for the trainer's default."""
        if self.objective is not None:
            return BestEpoch(self.objective, self.mode)
        return BestEpoch(default_metric, default_mode)


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


#: Keys of a search space's ``dataset`` section that are not trainer options.
DATASET_KEYS = ("path", "format")


def write_per_image(folder: Path, split: str, arrays: Mapping[str, Any]) -> Path:
    """``<folder>/<split>_per_image.npz``: an evaluation's per-image arrays (``Trainer.objective_on_subset``).

    A plain ``.npz`` (no pickle): numbers and strings only, read back with ``allow_pickle=False``.
    """
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}_per_image.npz"
    values: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    np.savez_compressed(path, **values)
    return path


class Trainer(ABC):
    """Base class of registered trainers.

    Subclasses set ``name``, ``task``, ``params`` (including ``COMMON_PARAMS``),
    ``dataset_options`` and ``metrics`` and implement ``prepare_data`` and ``train``.
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

    def param_problems(self, values: Mapping[str, Any]) -> list[str]:
        """``"name: problem"`` for every unknown parameter and every invalid value in ``values``."""
        problems = [f"{k}: unknown parameter" for k in sorted(set(values) - set(self.params))]
        problems += [
            f"{k}: {p}" for k, v in values.items() if k in self.params for p in self.params[k].problems(v)
        ]
        return problems

    def format_problem(self, dataset: Mapping[str, Any]) -> tuple[str, str] | None:
        """``("dataset.format", message)`` when ``dataset`` names a format this trainer does not read."""
        data_format = dataset.get("format", "auto")
        if data_format in self.dataset_formats:
            return None
        return "dataset.format", f"{data_format!r} is not allowed; allowed: {', '.join(self.dataset_formats)}"

    def dataset_problems(self, dataset: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(key, message)`` for a disallowed format, unknown options and bad option values.

        ``dataset`` is a search space's ``dataset`` section; ``path`` is not checked
        here (whether it must exist depends on the caller). A ``None`` value counts
        as unset. Search-space validation and ``prepare_data`` both report these.
        """
        problems = [p for p in [self.format_problem(dataset)] if p is not None]
        allowed = ", ".join([*DATASET_KEYS, *sorted(self.dataset_options)])
        for key, value in dataset.items():
            if key in DATASET_KEYS:
                continue
            spec = self.dataset_options.get(key)
            if spec is None:
                message = f"unknown dataset option for trainer {self.name!r}; allowed: {allowed}"
                problems.append((f"dataset.{key}", message))
            elif value is not None:
                problems += [(f"dataset.{key}", problem) for problem in spec.problems(value)]
        return problems

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The values a trial really runs with, derived ones included (for logging).

        Trainers fill in their defaults and add derived values; an invalid set
        raises ``TrialConfigurationError``. The default keeps ``params`` as given.
        """
        return dict(params)

    @abstractmethod
    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        """Validate and convert ``dataset`` once; the same call on any node gives the same result."""

    @abstractmethod
    def train(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
        """Train one ``resolve``d configuration (not resolved again), reporting every epoch.

        Returns summary metrics, among them ``best/<objective>`` (``hemotune.metrics.best_key``)
        for the objective in use.
        """

    def evaluate(
        self, weights: Path, data: PreparedData, split: str, resolved: Resolved, context: TrialContext
    ) -> Metrics:
        """Metrics of ``weights`` on split ``val`` or ``test`` of ``data``, keyed ``<split>/<name>``.

        The names mirror the ``val/`` metrics training reports, so a run's
        ``weights/best.pt`` evaluated on its val split reproduces its logged best.
        Details that are not scalars (confusion matrix, the classes averaged over)
        are in ``evaluate_details`` and in ``<context.workdir>/evaluation/<split>.json``.
        A split ``data`` does not have is a ``UsageError`` naming the dataset.
        """
        return dict(self.evaluate_details(weights, data, split, resolved, context)["metrics"])

    def evaluate_details(
        self, weights: Path, data: PreparedData, split: str, resolved: Resolved, context: TrialContext
    ) -> dict[str, Any]:
        """One evaluation: ``{"metrics": <what evaluate returns>, ...}`` plus the trainer's non-scalar details."""
        raise UsageError(f"trainer {self.name!r} cannot evaluate weights")

    def prepare_test_data(
        self, dataset: Mapping[str, Any], test_path: str | None, params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData | None:
        """The data whose ``test`` split is ``test_path`` (any supported format), else the dataset's own test.

        ``None`` when neither exists. Classes are matched by name to the training
        classes; one missing from the test set is in ``summary["missing_classes"]``.
        """
        raise UsageError(f"trainer {self.name!r} has no test-split support")

    def objective_on_subset(self, per_image: Mapping[str, Any], metric: str, indices: Any) -> float:
        """``metric`` recomputed over the test images ``indices`` (repeats allowed: a bootstrap resample).

        ``per_image`` is what ``evaluate_details`` saved (``per_image_file``: arrays, one
        entry per image under ``images``, in the order ``indices`` refers to). Over all
        images it gives the evaluation's own value of ``metric``; ``hemotune evaluate``
        resamples images with it, so its bootstrap is of the objective itself (mAP, macro-F1),
        not of a per-image proxy. The default: ``metric`` is the mean of a per-image
        ``score`` saved with the name of that metric. A metric that cannot be recomputed
        is a ``UsageError``.
        """
        import numpy as np

        if "score" not in per_image or str(per_image.get("metric", "")) != metric:
            raise UsageError(f"trainer {self.name!r} cannot recompute {metric!r} over a subset of images")
        return float(np.mean(np.asarray(per_image["score"])[np.asarray(indices, dtype=np.int64)]))

    def fit(self, params: Mapping[str, Any], report: Report, context: TrialContext | None = None) -> Metrics:
        """Resolve ``params`` (seed: ``params["seed"]``, else the context's) and train them."""
        context = context or TrialContext.temporary()
        seed = params.get("seed", context.seed)
        return self.train(self.resolve({**params, "seed": seed}), report, context)
