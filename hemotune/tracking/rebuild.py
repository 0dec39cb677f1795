"""The MLflow side of rebuilding a search's tree on a new, empty server (``hemotune sync`` after head loss).

When the head node is lost, its MLflow server and that server's store go with it:
the parent and child run ids recorded in ``hemotune_search.json`` then name runs
the new server never had. ``parent_run_exists`` tells that case from a server that
merely holds the search; ``log_missing_artifacts`` attaches the files recovered
from Ray Tune's trial folders without duplicating any a previous rebuild logged.
The orchestration (what to recover, in which order) is ``hemotune.tuning.rebuild``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hemotune.tracking.client import client_for
from hemotune.tracking.runs import log_new_params, param_view

#: Tags of a rebuilt parent run: where its lost original lived, and when it was rebuilt.
TAG_REBUILT_FROM = "hemotune.rebuilt_from"
TAG_REBUILT_AT = "hemotune.rebuilt_at"
#: Tag of a rebuilt child run: the artifacts recovered from its Tune trial folder.
TAG_RECOVERED = "hemotune.recovered_artifacts"


def parent_run_exists(tracking_uri: str, run_id: str, experiment: str) -> bool:
    """Whether the server at ``tracking_uri`` knows run ``run_id`` (a new, empty server does not).

    Only "no such run" means lost; any other error (unreachable server, 401) is raised,
    so a transient outage never makes ``hemotune sync`` build a second tree. MLflow's
    basic-auth app answers a request for a run it does not have with 403 (so that it
    tells nobody which run ids exist); the run is then looked for in its experiment
    ``experiment`` (the search's MLflow experiment, by name), which a user allowed to
    read it can search.
    """
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        if exc.error_code == "PERMISSION_DENIED":
            return _run_in_experiment(client, run_id, experiment)
        raise
    return True


def _run_in_experiment(client: Any, run_id: str, experiment: str) -> bool:
    """Whether experiment ``experiment`` (by name) holds run ``run_id``; a missing experiment holds none."""
    from mlflow.entities import ViewType

    found = client.get_experiment_by_name(experiment)  # a 403 here (not allowed to read it) is raised
    if found is None:
        return False
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"attributes.run_id = '{run_id}'", run_view_type=ViewType.ALL
    )
    return bool(runs)


def logged_artifact_dirs(client: Any, run_id: str) -> set[str]:
    """The top-level artifact paths a run already has (files and folders)."""
    return {a.path for a in client.list_artifacts(run_id)}


def log_missing_artifacts(tracking_uri: str, run_id: str, files: Mapping[str, Path]) -> list[str]:
    """Log ``files`` (artifact path -> local file or folder) that the run lacks; returns those logged.

    An artifact path ``config/resolved.yaml`` goes to folder ``config``; a local folder is
    logged whole under its artifact path. A path whose top-level folder the run already
    has is skipped, so a repeated rebuild adds nothing.
    """
    client = client_for(tracking_uri)
    present = logged_artifact_dirs(client, run_id)
    logged = []
    for name, path in files.items():
        if name.split("/", 1)[0] in present:
            continue
        if path.is_dir():
            client.log_artifacts(run_id, str(path), name)
        else:
            folder = name.rsplit("/", 1)[0] if "/" in name else None
            client.log_artifact(run_id, str(path), folder)
        logged.append(name)
    if logged:
        client.set_tag(run_id, TAG_RECOVERED, ", ".join(logged))
    return logged


def log_missing_params(tracking_uri: str, run_id: str, params: Mapping[str, Any]) -> None:
    """Log the params the run lacks (a trial's own ``data`` path, which the driver's view of it omits)."""
    client = client_for(tracking_uri)
    log_new_params(client, run_id, param_view(params), client.get_run(run_id).data.params)
