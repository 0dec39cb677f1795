"""The searcher of a search: its ``search:`` section as an Optuna sampler inside Ray Tune's OptunaSearch.

* ``build_sampler``: ``tpe`` (multivariate, constant liar, grouped when the space is
  conditional), ``random``, ``gp``, ``cmaes``, ``nsga2``; every one seeded with the
  space's seed. ``grid`` enqueues its cells and never needs the sampler.
* the space OptunaSearch samples: the plain distributions (a space without
  ``when:``, as before), or a define-by-run function (``ConditionalSpace``,
  ``GridSpace``) that suggests only the parameters that exist in the trial. Both are
  plain picklable objects: Tune pickles the searcher with the experiment.
* the study lives in an Optuna journal file beside the experiment
  (``optuna_journal.log``), so ``optuna-dashboard <file>`` shows the search live and
  ``--resume`` continues the same study.

Imported only when a search runs (it imports Optuna; the searcher imports Ray).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hemotune import storage
from hemotune.config import ARM_KEY, Distribution, GridArm, SearchSpace
from hemotune.spaces import optuna_space
from hemotune.spaces.conditions import activation_order

#: The study's journal, in the experiment's local folder.
JOURNAL_FILE = "optuna_journal.log"
STUDY_NAME = "hemotune"


def journal_path(experiment_path: str, local_dir: Path) -> Path:
    """Where the study's journal lives: the experiment folder, or ``local_dir`` for an ``s3://`` one.

    A journal must be a local file the driver appends to; for a remote experiment a copy
    travels with the searcher's state (``ResumableOptunaSearch``).
    """
    folder = local_dir if storage.is_uri(experiment_path) else Path(experiment_path).expanduser().resolve()
    return folder / JOURNAL_FILE


def dashboard_command(journal: Path) -> str:
    """The one line that shows the study live (optuna-dashboard is installed separately)."""
    return f"optuna-dashboard {journal}"


def describe_search(space: SearchSpace) -> str:
    """One line: sampler, scheduler, and for a grid how many trials it runs."""
    search = space.search
    text = f"{search.sampler} sampler, {search.scheduler} scheduler"
    if search.sampler == "grid":
        arms = len(search.grid_arms)
        text += f"; grid {arms} points x {search.grid_repeats} repeats = {arms * search.grid_repeats} trials"
    if space.objectives:
        text += "; " + describe_objectives(space)
    if space.budget.target is not None:
        text += f"; stops at {space.objective.metric} {'>=' if space.objective.mode == 'max' else '<='} {space.budget.target}"
    return text


def describe_objectives(space: SearchSpace) -> str:
    """The objectives of a multi-objective search and which one early stopping uses (or that it is off)."""
    names = ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives)
    scheduler = space.search.scheduler
    stopping = (
        "early stopping off (scheduler none)"
        if scheduler == "none"
        else f"early stopping ({scheduler}) on the first, {space.objective.metric}"
    )
    return f"{len(space.objectives)} objectives {names}, Pareto front at the end; {stopping}"


def build_sampler(space: SearchSpace) -> Any:
    """The seeded Optuna sampler the ``search:`` section names, with its options."""
    import optuna

    from hemotune.tuning import picklable

    search, seed = space.search, space.seed
    options = dict(search.sampler_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search.sampler == "tpe":
            conditional = any(dist.when for dist in space.parameters)
            options = {"multivariate": True, **({"group": True} if conditional else {}), **options}
            return optuna.samplers.TPESampler(seed=seed, **options)
        factories: dict[str, Callable[..., Any]] = {
            "random": optuna.samplers.RandomSampler,
            "gp": optuna.samplers.GPSampler,
            "cmaes": optuna.samplers.CmaEsSampler,
            "nsga2": picklable.NSGAIISampler,  # Optuna's, made picklable
            "grid": optuna.samplers.RandomSampler,  # never asked: every grid trial is enqueued
        }
        return factories[search.sampler](seed=seed, **options)


def build_searcher(space: SearchSpace, journal: Path | None, *, remote: bool = False) -> Any:
    """``ResumableOptunaSearch`` over the space, its known points (or grid cells) enqueued first.

    ``journal``: the study's file (``None``: in memory); ``remote``: the experiment is
    not beside it (``s3://``), so a copy of it travels with the searcher's state.
    """
    import optuna

    from hemotune.tuning.searcher import ResumableOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    points = [dict(p) for p in space.points_to_evaluate]
    searched: Any = optuna_space(space)
    names = [dist.name for dist in space.parameters]
    if space.search.sampler == "grid":
        searched = GridSpace(space.parameters, space.search.grid_arms, space.seed, space.search.grid_repeats)
        points = searched.cells()
        names = [ARM_KEY, *names, "seed"]
    elif any(dist.when for dist in space.parameters):
        searched = ConditionalSpace(space.parameters)
    return ResumableOptunaSearch(
        space=searched,
        param_names=names,
        distributions=_all_distributions(space),
        # several objectives: lists, and Optuna's multi-objective study learns from every one
        metric=[o.metric for o in space.objectives] if space.objectives else space.objective.metric,
        mode=[o.mode for o in space.objectives] if space.objectives else space.objective.mode,
        points_to_evaluate=points or None,
        sampler=build_sampler(space),
        study_name=STUDY_NAME,
        storage=_journal_storage(journal) if journal is not None else None,
        snapshot_journal=journal if journal is not None and remote else None,
    )


def retire_lost_trials(journal: Path) -> int:
    """Mark as FAIL every study trial still RUNNING in ``journal`` once the search has finished; how many.

    When nothing runs any more, such a trial was asked for a Tune trial that a killed driver
    lost (suggested after its last saved state, so the resumed search ran another trial in its
    place). Left RUNNING it would count as a trial in flight for ever (``optuna-dashboard``,
    the constant liar of TPE).
    """
    import optuna
    from optuna.trial import TrialState

    if not journal.exists():
        return 0
    study = optuna.load_study(study_name=STUDY_NAME, storage=_journal_storage(journal))
    lost = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in lost:
        study.tell(trial.number, state=TrialState.FAIL)
    return len(lost)


def _journal_storage(journal: Path) -> Any:
    """An Optuna ``JournalStorage`` appending to ``journal`` (created with its folder)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal)))


def _all_distributions(space: SearchSpace) -> dict[str, Any]:
    """Every Optuna distribution a trial of ``space`` may hold (the grid's arm and seed included)."""
    import optuna

    out = dict(optuna_space(space))
    if space.search.sampler == "grid":
        arms = [arm.name for arm in space.search.grid_arms]
        out[ARM_KEY] = optuna.distributions.CategoricalDistribution(arms)
        out["seed"] = optuna.distributions.IntDistribution(
            space.seed, space.seed + space.search.grid_repeats - 1
        )
    return out


def suggest(trial: Any, dist: Distribution) -> Any:
    """``trial.suggest_<type>`` for ``dist`` (through Ray's captor, which records the value)."""
    if dist.type == "categorical":
        return trial.suggest_categorical(dist.name, list(dist.choices or ()))
    low, high = dist.bounds
    if dist.type == "int":
        return trial.suggest_int(dist.name, int(low), int(high), step=int(dist.step or 1), log=dist.log)
    return trial.suggest_float(dist.name, float(low), float(high), step=dist.step, log=dist.log)


class ConditionalSpace:
    """Define-by-run space: parents first, and a parameter only where its ``when:`` holds."""

    def __init__(self, parameters: Sequence[Distribution]) -> None:
        self.order = tuple(activation_order(parameters))

    def __call__(self, trial: Any) -> None:
        values: dict[str, Any] = {}
        for dist in self.order:
            if dist.is_active(values):
                values[dist.name] = suggest(trial, dist)


class GridSpace:
    """Define-by-run space of a grid: the arm, the values it sets, and the repeat's seed.

    Every cell is enqueued (``cells``), so each suggestion here returns the enqueued
    value; the arm is suggested first and decides which parameters the trial has.
    """

    def __init__(
        self, parameters: Sequence[Distribution], arms: Sequence[GridArm], seed: int, repeats: int
    ) -> None:
        self.order = tuple(activation_order(parameters))
        self.arms = {arm.name: dict(arm.values) for arm in arms}
        self.seed = seed
        self.repeats = repeats

    def cells(self) -> list[dict[str, Any]]:
        """Every (arm, seed) cell, repeat by repeat, so an unfinished grid still covers every arm."""
        return [
            {ARM_KEY: name, **values, "seed": self.seed + repeat}
            for repeat in range(self.repeats)
            for name, values in self.arms.items()
        ]

    def __call__(self, trial: Any) -> None:
        arm = trial.suggest_categorical(ARM_KEY, list(self.arms))
        for dist in self.order:
            if dist.name in self.arms[arm]:
                suggest(trial, dist)
        trial.suggest_int("seed", self.seed, self.seed + self.repeats - 1)


def reaches(value: Any, target: float, mode: str) -> bool:
    """Whether an objective ``value`` reaches ``target`` (``>=`` for max, ``<=`` for min)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value >= target if mode == "max" else value <= target


def target_reached(space: SearchSpace, values: Sequence[float | None]) -> bool:
    """Whether a trial's best objective among ``values`` reached ``budget.target`` (a finished search)."""
    target = space.budget.target
    return target is not None and any(reaches(v, target, space.objective.mode) for v in values)
