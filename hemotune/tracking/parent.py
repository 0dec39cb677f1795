"""The driver side of tracking: the parent run of one search execution.

``open_search_tracking`` starts the parent run (tagged with what identifies the
search: space hash, dataset fingerprint, version, Tune experiment) and logs the
search space and the data report, or re-opens it on ``--resume``. At the end the
search records its best trial on it and closes it; a failed or killed search also
closes the child runs still RUNNING. A search whose driver died without closing
anything is closed later by ``close_interrupted`` (``hemotune sync``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hemotune._version import __version__
from hemotune.config import RunSettings, SearchSpace
from hemotune.metrics import best_key
from hemotune.tracking.client import client_for, ensure_experiment, resolve_tracking_uri, retry, short_error
from hemotune.tracking.runs import (
    TAG_BEST_RUN,
    TAG_BEST_TRIAL,
    TAG_DATASET,
    TAG_EXPERIMENT,
    TAG_OUTCOME,
    TAG_RESUME,
    TAG_ROLE,
    TAG_SEARCH,
    TAG_SPACE,
    TAG_TRIAL_ID,
    child_runs,
    log_new_params,
    metric_entities,
    param_value,
    param_view,
)

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.data.prepared import PreparedData
    from hemotune.results import RankedTrial

log = logging.getLogger(__name__)


@dataclass
class SearchTracking:
    """The parent run of one search execution (driver side)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    @functools.cached_property
    def client(self) -> Any:
        """One MLflow client for all the parent run's calls."""
        return client_for(self.tracking_uri)

    @classmethod
    def start(
        cls,
        *,
        tracking_uri: str,
        artifact_location: str | None,
        experiment_name: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
    ) -> SearchTracking:
        """Create the parent run (and its MLflow experiment if needed) and log its params."""
        client = client_for(tracking_uri)
        # A new SQLite store is created on first use; another process creating it at the
        # same moment makes that fail once ("table ... already exists"): try again.
        experiment_id = retry(
            lambda: ensure_experiment(client, experiment_name, artifact_location),
            attempts=3,
            what="opening the MLflow experiment",
        )
        all_tags = {TAG_ROLE: "search", "hemotune.version": __version__, **tags}
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        tracking = cls(tracking_uri, experiment_id, run.info.run_id)
        tracking.log_params(params)
        return tracking

    @classmethod
    def reopen(cls, *, tracking_uri: str, experiment_id: str, parent_run_id: str) -> SearchTracking:
        """Continue the parent run of a resumed search (status back to RUNNING, no outcome yet)."""
        client = client_for(tracking_uri)
        client.update_run(parent_run_id, status="RUNNING")
        client.set_tag(parent_run_id, "hemotune.resumed_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        for key in (TAG_OUTCOME, TAG_RESUME):  # set again when this execution ends
            with contextlib.suppress(Exception):  # MLflow raises for a tag the run does not have
                client.delete_tag(parent_run_id, key)
        return cls(tracking_uri, experiment_id, parent_run_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log the params the parent run does not have yet."""
        existing = self.client.get_run(self.parent_run_id).data.params
        log_new_params(self.client, self.parent_run_id, param_view(params), existing)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.parent_run_id, text, artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.parent_run_id, key, param_value(value))

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Log the finite entries of ``metrics`` at step 0 in one request."""
        batch = metric_entities(metrics)
        if batch:
            self.client.log_batch(self.parent_run_id, metrics=batch)

    def child_run_ids(self) -> dict[str, str]:
        """trial id -> child run id, for the trials of this search."""
        runs = child_runs(self.client, self.experiment_id, self.parent_run_id)
        return {r.data.tags[TAG_TRIAL_ID]: r.info.run_id for r in runs if TAG_TRIAL_ID in r.data.tags}

    def download_artifacts(self, run_id: str, dest: Path) -> list[Path]:
        """Copy a run's artifacts into ``dest``; returns the files."""
        import mlflow.artifacts

        dest.mkdir(parents=True, exist_ok=True)
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="", dst_path=str(dest), tracking_uri=self.tracking_uri
            )
        except Exception as exc:
            log.warning("could not download the artifacts of run %s: %s", run_id, short_error(exc))
            return []
        return sorted(p for p in Path(local).rglob("*") if p.is_file())

    def record_best(self, best: RankedTrial, objective: str) -> None:
        """Tag the parent run with the best trial and log its best epoch's metrics."""
        self.set_tags({TAG_BEST_TRIAL: best.trial_id, TAG_BEST_RUN: best.run_id or ""})
        self.log_metrics({best_key(objective): best.best_value, **best.best_metrics})

    def record_ranking(self, markdown: str, *, finished: bool) -> None:
        """Attach ``ranking.md`` and tag whether the search finished or was interrupted."""
        self.log_text(markdown, "ranking.md")
        self.set_tags({TAG_OUTCOME: "finished" if finished else "interrupted"})

    def finish(self, status: str = "FINISHED", *, resume_hint: str | None = None) -> None:
        """Close the parent run; child runs still RUNNING (a failed or killed search) become KILLED.

        A KILLED (interrupted) parent is tagged with ``resume_hint``, the command that continues it.
        """
        if status != "FINISHED":
            try:
                self._kill_running_children(outcome=None)
            except Exception as exc:
                log.warning("could not close the child runs: %s", short_error(exc))
        if status == "KILLED" and resume_hint:
            with contextlib.suppress(Exception):
                self.set_tags({TAG_RESUME: resume_hint})
        retry(lambda: self.client.set_terminated(self.parent_run_id, status), what="closing the parent run")

    def close_interrupted(self, resume_hint: str) -> int:
        """Close a search whose driver died: every RUNNING run KILLED and tagged ``interrupted``.

        The parent also gets ``resume_hint`` (``hemotune.resume``); ``--resume`` re-opens
        it and the children of the trials it continues. Returns how many child runs it closed.
        """
        closed = self._kill_running_children(outcome="interrupted")
        self.set_tags({TAG_OUTCOME: "interrupted", TAG_RESUME: resume_hint})
        if self.client.get_run(self.parent_run_id).info.status != "KILLED":
            self.client.set_terminated(self.parent_run_id, "KILLED")
        return closed

    def _kill_running_children(self, outcome: str | None) -> int:
        """Close the child runs still RUNNING as KILLED (tagged with ``outcome`` if given)."""
        closed = 0
        for run in child_runs(self.client, self.experiment_id, self.parent_run_id):
            if run.info.status == "RUNNING":
                if outcome is not None:
                    self.client.set_tag(run.info.run_id, TAG_OUTCOME, outcome)
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed += 1
        return closed


def open_search_tracking(
    space: SearchSpace,
    settings: RunSettings,
    prepared: PreparedData,
    tune_experiment: str,
    experiment_path: str,
    state: Mapping[str, Any] | None,
) -> SearchTracking:
    """The parent run of this execution: re-opened from ``state`` on resume, else started and filled."""
    if state is not None:
        return SearchTracking.reopen(
            tracking_uri=settings.tracking_uri or state["tracking_uri"],
            experiment_id=state["experiment_id"],
            parent_run_id=state["parent_run_id"],
        )
    uri, artifact_location = resolve_tracking_uri(settings.tracking_uri, settings.local_dir)
    tracking = SearchTracking.start(
        tracking_uri=uri,
        artifact_location=artifact_location,
        experiment_name=settings.mlflow_experiment or space.name,
        run_name=tune_experiment,
        tags=parent_tags(space, prepared, tune_experiment, experiment_path),
        params=parent_params(space),
    )
    log_search_inputs(tracking, space, prepared)
    return tracking


def parent_tags(
    space: SearchSpace, prepared: PreparedData, tune_experiment: str, experiment_path: str
) -> dict[str, str]:
    """What identifies a search execution: its space, data, trainer, objective and storage."""
    return {
        TAG_SEARCH: space.name,
        "hemotune.space_file": space.source,
        TAG_SPACE: space.source_hash,
        TAG_DATASET: prepared.fingerprint,
        "hemotune.dataset": prepared.source,
        "hemotune.version": __version__,
        "hemotune.trainer": space.trainer,
        "hemotune.objective": f"{space.objective.metric} ({space.objective.mode})",
        TAG_EXPERIMENT: tune_experiment,
        "hemotune.storage": experiment_path,
        "hemotune.preset": space.preset or "",
    }


def parent_params(space: SearchSpace) -> dict[str, Any]:
    """The search's settings as flat params: budget, resources, fixed values and distributions."""
    return {
        "search": space.name,
        "trainer": space.trainer,
        "objective": space.objective.metric,
        "mode": space.objective.mode,
        "seed": space.seed,
        **{f"budget.{k}": v for k, v in asdict(space.budget).items()},
        **{f"resources.{k}": v for k, v in asdict(space.resources).items()},
        **{f"fixed.{k}": v for k, v in space.fixed.items()},
        **{f"space.{p.name}": p.as_dict() for p in space.parameters},
    }


def log_search_inputs(tracking: SearchTracking, space: SearchSpace, prepared: PreparedData) -> None:
    """Attach the resolved search space, the data report (JSON and Markdown) and the data summary."""
    tracking.log_text(yaml.safe_dump(space.as_dict(), sort_keys=False), "config/search_space.yaml")
    if prepared.report_path is not None and prepared.report_path.exists():
        tracking.log_artifact(prepared.report_path, "data")
        markdown = prepared.report_path.with_suffix(".md")
        if markdown.exists():
            tracking.log_artifact(markdown, "data")
    if prepared.summary:
        tracking.log_text(yaml.safe_dump(dict(prepared.summary), sort_keys=False), "data/summary.yaml")
