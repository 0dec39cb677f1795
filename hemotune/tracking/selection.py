"""Choosing a finished search's best trial from MLflow alone (``hemotune best``): no Ray, no Tune files.

The search's parent run says what it optimised (params ``objective`` and ``mode``),
which parameters it searched (params ``space.<name>``) and, as the artifact
``config/search_space.yaml``, the whole validated space. Its child runs (tag
``hemotune.role=trial``) are ranked by one metric with ``MlflowClient.search_runs``
and ``order_by``, the query the MLflow UI runs when a column is sorted: runs lacking
the metric (or holding NaN) come last in either direction, ties go to the newer
run. So ``hemotune best`` and the UI always name the same winner, on the embedded
SQLite store and on a tracking server alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hemotune.errors import UsageError
from hemotune.metrics import best_key, metric_key
from hemotune.tracking.runs import (
    PARENT_TAG,
    TAG_BEST_RUN,
    TAG_BEST_TRIAL,
    TAG_OUTCOME,
    TAG_ROLE,
    TAG_SEARCH,
    TAG_TRIAL_ID,
)

#: The artifact of the parent run that holds the validated search space.
SPACE_ARTIFACT = "config/search_space.yaml"
_PAGE = 1000


@dataclass(frozen=True)
class SearchRun:
    """The parent run of one search execution, as ``hemotune best`` reads it."""

    run_id: str
    experiment_id: str
    search: str
    objective: str
    mode: str
    param_names: tuple[str, ...]
    tags: Mapping[str, str]
    start_time: int

    @classmethod
    def from_run(cls, run: Any) -> SearchRun:
        params = run.data.params
        return cls(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            search=run.data.tags.get(TAG_SEARCH, ""),
            objective=params.get("objective", ""),
            mode=params.get("mode", "max"),
            param_names=tuple(k.removeprefix("space.") for k in params if k.startswith("space.")),
            tags=dict(run.data.tags),
            start_time=int(run.info.start_time or 0),
        )


@dataclass(frozen=True)
class Candidate:
    """One trial's child run in the ranking: its place, its value of the ranking metric, what it logged."""

    rank: int
    run_id: str
    trial_id: str
    status: str
    outcome: str
    value: float | None
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    artifact_uri: str

    @property
    def best_epoch(self) -> int | None:
        epoch = self.metrics.get("best_epoch")
        return int(epoch) if epoch is not None and math.isfinite(epoch) else None


@dataclass(frozen=True)
class Selection:
    """A search's trials ranked by ``metric`` (``mode``) as MLflow sorts them; ``best`` is the first."""

    tracking_uri: str
    parent: SearchRun
    metric: str
    mode: str
    candidates: Sequence[Candidate] = field(default_factory=tuple)

    @property
    def best(self) -> Candidate | None:
        """The top run, if it has a finite value of the metric (MLflow sorts the rest last)."""
        first = self.candidates[0] if self.candidates else None
        return first if first is not None and first.value is not None else None

    @property
    def by_objective(self) -> bool:
        """Whether the ranking is by the search's own objective (``best/<objective>``)."""
        return self.metric == best_key(self.parent.objective)


def sqlite_store_problem(tracking_uri: str) -> str | None:
    """Why an embedded ``sqlite:///`` store cannot hold a search (its file is missing), else ``None``.

    Opening a missing SQLite store would create an empty one: ``hemotune best`` must not.
    """
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix) :]).is_file():
        return f"there is no MLflow store at {tracking_uri[len(prefix) :]}"
    return None


def find_search_run(client: Any, search: str, run_id: str | None, where: str) -> SearchRun:
    """The parent run ``run_id`` of ``search``, else its latest one; a ``UsageError`` naming ``where``."""
    if run_id:
        return _parent_by_id(client, search, run_id, where)
    experiments = _experiment_ids(client)
    runs = (
        client.search_runs(
            experiments,
            filter_string=f"tags.`{TAG_ROLE}` = 'search' and tags.`{TAG_SEARCH}` = '{_quoted(search)}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if experiments
        else []
    )
    if not runs:
        known = sorted(_known_searches(client, experiments))
        listed = f"; searches there: {', '.join(known)}" if known else "; it holds no search"
        raise UsageError(f"no search named {search!r} in the MLflow store {where}{listed}")
    return SearchRun.from_run(runs[0])


def _parent_by_id(client: Any, search: str, run_id: str, where: str) -> SearchRun:
    """Parent run ``run_id``, checked to be a search execution of ``search``."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise UsageError(f"no run {run_id!r} in the MLflow store {where} ({exc.error_code})") from exc
    tags = run.data.tags
    if tags.get(TAG_ROLE) != "search" or tags.get(TAG_SEARCH) != search:
        what = f"a {tags.get(TAG_ROLE, 'non-hemotune')} run of search {tags.get(TAG_SEARCH, '?')!r}"
        raise UsageError(f"run {run_id} in {where} is {what}, not a parent run of search {search!r}")
    return SearchRun.from_run(run)


def _experiment_ids(client: Any) -> list[str]:
    """Every active MLflow experiment (a search's experiment may be named by ``--mlflow-experiment``)."""
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=_PAGE, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def _known_searches(client: Any, experiments: list[str]) -> set[str]:
    """The names of the searches in the store (for an error message)."""
    if not experiments:
        return set()
    runs = client.search_runs(experiments, filter_string=f"tags.`{TAG_ROLE}` = 'search'", max_results=_PAGE)
    return {r.data.tags.get(TAG_SEARCH, "") for r in runs} - {""}


def _quoted(value: str) -> str:
    """``value`` inside a single-quoted MLflow filter string."""
    return value.replace("'", "\\'")


def rank_children(
    client: Any, tracking_uri: str, parent: SearchRun, metric: str | None = None, mode: str | None = None
) -> Selection:
    """The trials of ``parent`` ranked by ``metric`` (default ``best/<objective>``) in ``mode``.

    ``mode`` defaults to the objective's. One ``search_runs`` query with ``order_by`` does
    the sorting, so the order is MLflow's own (the UI's), paged through to the last run.
    """
    key = metric_key(metric) if metric else best_key(parent.objective)
    direction = mode or parent.mode
    if direction not in ("max", "min"):
        raise UsageError(f"--mode must be max or min, got {direction!r}")
    order = f"metrics.`{key}` {'DESC' if direction == 'max' else 'ASC'}"
    children = f"tags.`{PARENT_TAG}` = '{parent.run_id}' and tags.`{TAG_ROLE}` = 'trial'"
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [parent.experiment_id],
            filter_string=children,
            order_by=[order],
            max_results=_PAGE,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            break
    candidates = [_candidate(rank, run, key) for rank, run in enumerate(runs, start=1)]
    return Selection(tracking_uri, parent, key, direction, tuple(candidates))


def _candidate(rank: int, run: Any, key: str) -> Candidate:
    value = run.data.metrics.get(key)
    return Candidate(
        rank=rank,
        run_id=run.info.run_id,
        trial_id=run.data.tags.get(TAG_TRIAL_ID, ""),
        status=run.info.status,
        outcome=run.data.tags.get(TAG_OUTCOME, ""),
        value=float(value) if value is not None and math.isfinite(value) else None,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        artifact_uri=run.info.artifact_uri,
    )


def tag_best(client: Any, selection: Selection) -> dict[str, str]:
    """Tag the parent run with the best trial; returns the tags set (none without a best).

    Ranked by the objective, the tags are the search's own (``hemotune.best_trial_id``,
    ``hemotune.best_run_id``); ranked by another metric ``M``, they are suffixed ``/M``
    so the objective's winner stays on record.
    """
    best = selection.best
    if best is None:
        return {}
    suffix = "" if selection.by_objective else f"/{selection.metric}"
    tags = {f"{TAG_BEST_TRIAL}{suffix}": best.trial_id, f"{TAG_BEST_RUN}{suffix}": best.run_id}
    for key, value in tags.items():
        client.set_tag(selection.parent.run_id, key, value)
    return tags


def download_run_artifacts(tracking_uri: str, run_id: str, dest: Path, artifact_path: str = "") -> list[Path]:
    """Copy the run's artifacts (all, or those under ``artifact_path``) into ``dest``; returns the files."""
    import mlflow.artifacts

    dest.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact_path, dst_path=str(dest), tracking_uri=tracking_uri
    )
    root = Path(local)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]


def stored_space(tracking_uri: str, parent: SearchRun, scratch: Path) -> dict[str, Any]:
    """The validated search space the parent run stored (``config/search_space.yaml``) as a document."""
    files = download_run_artifacts(tracking_uri, parent.run_id, scratch, SPACE_ARTIFACT)
    doc = yaml.safe_load(files[0].read_text()) if files else None
    if not isinstance(doc, dict):
        raise RuntimeError(f"the parent run {parent.run_id} has no readable {SPACE_ARTIFACT}")
    return doc


def lineage_tags(selection: Selection, candidate: Candidate, version: str) -> dict[str, str]:
    """Where a model comes from: search, trial, runs, space and data hashes, objective and value, version."""
    tags = selection.parent.tags
    value = candidate.metrics.get(best_key(selection.parent.objective))
    return {
        "hemotune.search": selection.parent.search,
        "hemotune.trial_id": candidate.trial_id,
        "hemotune.run_id": candidate.run_id,
        "hemotune.parent_run_id": selection.parent.run_id,
        "hemotune.tune_experiment": tags.get("hemotune.tune_experiment", ""),
        "hemotune.space_hash": tags.get("hemotune.space_hash", ""),
        "hemotune.dataset_hash": tags.get("hemotune.dataset_hash", ""),
        "hemotune.trainer": tags.get("hemotune.trainer", ""),
        "hemotune.objective": f"{selection.parent.objective} ({selection.parent.mode})",
        "hemotune.objective_value": "" if value is None else repr(float(value)),
        "hemotune.version": version,
        "hemotune.search_version": tags.get("hemotune.version", ""),
    }


def metric_history_entities(client: Any, run_id: str, keys: Sequence[str]) -> list[Any]:
    """The last logged ``Metric`` entity of each key (timestamps included, so re-logging it adds nothing)."""
    entities = []
    for key in keys:
        history = client.get_metric_history(run_id, key)
        if history:
            entities.append(max(history, key=lambda m: (m.step, m.timestamp)))
    return entities
