"""Registering a trial's weights in the MLflow Model Registry (``hemotune best --register NAME``).

MLflow 3's logged models fit what a search produces: a ``LoggedModel`` names the run
that trained it (``source_run_id``), carries its own params, tags and metrics, and
shows in the experiment's Models tab. So the best trial's ``weights/`` become a
logged model (a copy of the files in the model's own artifact folder: MLflow keeps
a logged model's files there, and a model version of a logged model must point
inside it), linked to the run as its output at the best epoch, with the run's
``best/*`` metrics re-logged against it (the very entities the run holds, so the
run's own histories do not change). A model version of NAME is made from it, tagged
with its lineage, and the alias ``champion`` moves to it. Stages are deprecated in
MLflow 3: aliases only. Older versions stay; registering a run NAME already holds
re-uses its version instead of adding a duplicate.

The weights are plain files (an Ultralytics or timm ``best.pt``), not an MLflow
flavour: fetch them with ``mlflow.artifacts.download_artifacts("models:/NAME@champion")``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemotune.offline import temporary_env
from hemotune.tracking.selection import Candidate, download_run_artifacts, metric_history_entities

CHAMPION = "champion"
WEIGHTS_DIR = "weights"


@dataclass(frozen=True)
class Registration:
    """A model version made (or found) for a run, and where the champion alias pointed before."""

    name: str
    version: str
    model_id: str | None
    source: str
    run_id: str
    reused: bool
    previous_champion: str | None


def register_candidate(
    client: Any,
    tracking_uri: str,
    name: str,
    candidate: Candidate,
    *,
    experiment_id: str,
    lineage: Mapping[str, str],
    alias: str = CHAMPION,
) -> Registration:
    """Register ``candidate``'s weights as a version of ``name`` and point ``alias`` at it."""
    _ensure_registered_model(client, name, lineage.get("hemotune.search", ""))
    previous = _alias_version(client, name, alias)
    existing = _version_of_run(client, name, candidate.run_id)
    if existing is not None:
        version, reused = existing, True
    else:
        version, reused = _new_version(client, tracking_uri, name, candidate, experiment_id, lineage), False
    client.set_registered_model_alias(name, alias, version.version)
    return Registration(
        name=name,
        version=str(version.version),
        model_id=_model_id(version),
        source=version.source,
        run_id=candidate.run_id,
        reused=reused,
        previous_champion=None if previous is None else str(previous.version),
    )


def _model_id(version: Any) -> str | None:
    """The logged model behind a version: its ``model_id``, else its ``models:/<model_id>`` source.

    The SQL registry of MLflow 3.17 records the logged model only in the version's source.
    """
    if getattr(version, "model_id", None):
        return str(version.model_id)
    source = str(version.source or "")
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def _ensure_registered_model(client: Any, name: str, search: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description=f"Best weights of the hemotune search {search!r} (`hemotune best --register`)."
        )


def _alias_version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _version_of_run(client: Any, name: str, run_id: str) -> Any | None:
    """The version of ``name`` already made from run ``run_id`` (the oldest), if any."""
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def _new_version(
    client: Any,
    tracking_uri: str,
    name: str,
    candidate: Candidate,
    experiment_id: str,
    lineage: Mapping[str, str],
) -> Any:
    """A logged model holding the run's weights, linked to the run and its metrics, then a version of it."""
    from mlflow.entities import LoggedModelOutput

    with tempfile.TemporaryDirectory(prefix="hemotune-register-") as scratch:
        files = download_run_artifacts(tracking_uri, candidate.run_id, Path(scratch), WEIGHTS_DIR)
        if not files:
            raise RuntimeError(
                f"run {candidate.run_id} (trial {candidate.trial_id}) has no {WEIGHTS_DIR}/ artifacts"
            )
        model = client.create_logged_model(
            experiment_id,
            name=f"{lineage.get('hemotune.search', 'search')}-{candidate.trial_id}",
            source_run_id=candidate.run_id,
            tags={**lineage, "hemotune.weights_uri": f"{candidate.artifact_uri}/{WEIGHTS_DIR}"},
            params={k: v for k, v in candidate.params.items() if k != "data"},
            model_type=lineage.get("hemotune.trainer") or None,
        )
        client.log_model_artifacts(model.model_id, str(Path(scratch) / WEIGHTS_DIR))
    try:
        _link_metrics(client, candidate, model.model_id)
        client.log_outputs(candidate.run_id, [LoggedModelOutput(model.model_id, candidate.best_epoch or 0)])
        client.finalize_logged_model(model.model_id, "READY")
        # The SQL registry looks the logged model up with a client of the *default* tracking URI.
        with temporary_env({"MLFLOW_TRACKING_URI": tracking_uri}):
            return client.create_model_version(
                name,
                source=f"models:/{model.model_id}",
                run_id=candidate.run_id,
                tags=dict(lineage),
                model_id=model.model_id,
                description=f"trial {candidate.trial_id} of {lineage.get('hemotune.search', '')}: "
                f"{lineage.get('hemotune.objective', '')} = {lineage.get('hemotune.objective_value', '')}",
            )
    except Exception:
        with contextlib.suppress(Exception):  # a model no version points at is marked, not left READY
            client.finalize_logged_model(model.model_id, "FAILED")
        raise


def _link_metrics(client: Any, candidate: Candidate, model_id: str) -> None:
    """The run's ``best/*`` metrics (and ``best_epoch``) re-logged with ``model_id``: the model's metrics."""
    from mlflow.entities import Metric

    keys = [k for k in candidate.metrics if k.startswith("best/") or k == "best_epoch"]
    linked = [
        Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id, run_id=candidate.run_id)
        for m in metric_history_entities(client, candidate.run_id, keys)
    ]
    if linked:
        client.log_batch(candidate.run_id, metrics=linked)
