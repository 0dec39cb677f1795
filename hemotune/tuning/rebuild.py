"""Rebuilding a search's MLflow tree on a new, empty MLflow server (``hemotune sync`` after head loss).

Ray Tune's experiment folder (on S3 in a cluster) outlives the head node; the
head's MLflow server and its store do not. ``tracking_for_sync`` notices that the
parent run recorded in ``hemotune_search.json`` is unknown to the server and
starts a new parent exactly as ``hemotune search`` does (same tags, params, search
space and, when the data can still be prepared, data report), then records the new
ids in the state file, so that ``hemotune search ... --resume`` continues logging into
the new tree. Reconciliation then creates one child per trial with every epoch of
Tune's ``result.json``; ``recover_trial_artifacts`` adds what a Tune trial folder
still holds (the resolved config, regenerated from the space and the trial's
params, and the newest kept checkpoint) and every artifact the trial reported
(``weights/best.*``, the best epoch's files), which each trial copied into its Tune
folder (``hemotune.tuning.durable``). Searches run before that copy existed lose them.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from hemotune import storage
from hemotune.config import RunSettings, SearchSpace
from hemotune.data.prepared import PreparedData
from hemotune.results import TrialRecord
from hemotune.tracking import SearchTracking, open_search_tracking
from hemotune.tracking.rebuild import (
    TAG_REBUILT_AT,
    TAG_REBUILT_FROM,
    log_missing_artifacts,
    log_missing_params,
    parent_run_exists,
)
from hemotune.tuning import state as search_state
from hemotune.tuning.durable import recover_from_trial_folder

log = logging.getLogger(__name__)

#: Set in the state file from the new parent's creation until its end-of-search records are written:
#: a rebuild cut short is completed by the next ``hemotune sync``.
PENDING_KEY = "mlflow_rebuild_pending"


def tracking_for_sync(
    space: SearchSpace,
    settings: RunSettings,
    state: dict[str, Any],
    experiment_path: str,
    prepare: Callable[[], PreparedData],
) -> tuple[SearchTracking, bool]:
    """``(the search's parent run, whether its tree is being rebuilt)`` on the server ``hemotune sync`` uses."""
    uri = settings.tracking_uri or state["tracking_uri"]
    if parent_run_exists(uri, state["parent_run_id"], _experiment_name(space, state)):
        tracking = SearchTracking(uri, state["experiment_id"], state["parent_run_id"])
        return tracking, bool(state.get(PENDING_KEY))
    return _rebuild_parent(space, settings, state, experiment_path, prepare), True


def adopt_lost_tree(
    space: SearchSpace,
    settings: RunSettings,
    state: dict[str, Any],
    experiment_path: str,
    prepared: PreparedData,
) -> None:
    """On ``--resume``: a parent run unknown to the server gets a new parent first (ids into ``state``).

    The resumed search then re-opens that parent, its trials log into it, and the end of the
    search creates the children Tune finished before; ``hemotune sync`` afterwards adds the
    artifacts recovered from the trial folders (the state keeps the rebuild pending until then).
    """
    uri = settings.tracking_uri or state["tracking_uri"]
    if not parent_run_exists(uri, state["parent_run_id"], _experiment_name(space, state)):
        _rebuild_parent(space, settings, state, experiment_path, lambda: prepared)


def _experiment_name(space: SearchSpace, state: Mapping[str, Any]) -> str:
    """The search's MLflow experiment: ``--mlflow-experiment`` as the state file records it, else its name."""
    return str(state.get("mlflow_experiment") or space.name)


def _rebuild_parent(
    space: SearchSpace,
    settings: RunSettings,
    state: dict[str, Any],
    experiment_path: str,
    prepare: Callable[[], PreparedData],
) -> SearchTracking:
    """A new parent run as ``hemotune search`` starts one, its ids recorded in the state file."""
    uri = settings.tracking_uri or state["tracking_uri"]
    log.warning(
        "parent run %s is unknown to %s (a new MLflow server?): rebuilding the search's tree from %s",
        state["parent_run_id"],
        uri,
        experiment_path,
    )
    prepared = _prepared_or_recorded(state, prepare)
    new_settings = replace(settings, tracking_uri=uri, mlflow_experiment=state.get("mlflow_experiment"))
    tune_experiment = state["tune_experiment"]
    tracking = open_search_tracking(space, new_settings, prepared, tune_experiment, experiment_path, None)
    tracking.set_tags(
        {
            TAG_REBUILT_FROM: f"{state['tracking_uri']} experiment {state['experiment_id']} "
            f"run {state['parent_run_id']}",
            TAG_REBUILT_AT: time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    state.update(
        tracking_uri=uri,
        experiment_id=tracking.experiment_id,
        parent_run_id=tracking.parent_run_id,
        **{PENDING_KEY: True},
    )
    search_state.write_state(experiment_path, state)
    return tracking


def _prepared_or_recorded(state: Mapping[str, Any], prepare: Callable[[], PreparedData]) -> PreparedData:
    """The search's data prepared again (for its data report), else what the state file recorded of it."""
    recorded = PreparedData(
        path=Path(state["data_path"]), fingerprint=state["dataset_hash"], source=state["data_path"]
    )
    try:
        prepared = prepare()
    except Exception as exc:
        log.warning("could not prepare the data again (%s): the rebuilt parent has no data report", exc)
        return recorded
    if prepared.fingerprint != state["dataset_hash"]:
        log.warning("the data changed since the search ran: the rebuilt parent has no data report")
        return recorded
    return prepared


def recover_trial_artifacts(
    tracking: SearchTracking,
    experiment_path: str,
    records: Sequence[TrialRecord],
    resolved: Mapping[str, Mapping[str, Any]],
    data_path: str,
) -> dict[str, list[str]]:
    """trial id -> the artifacts logged to its rebuilt child run from its Tune trial folder.

    A trial ran with its resolved values plus ``data``, the prepared data's path (the
    driver's, ``data_path``, unless the node prepared its own copy): that param is added too.
    """
    runs = tracking.child_run_ids()
    recovered: dict[str, list[str]] = {}
    for record in records:
        run_id = runs.get(record.trial_id)
        if run_id is None:
            continue
        params = {**resolved.get(record.trial_id, {}), "data": data_path}
        log_missing_params(tracking.tracking_uri, run_id, params)
        with tempfile.TemporaryDirectory(prefix="hemotune-recover-") as tmp:
            files = _trial_files(experiment_path, record, params, Path(tmp))
            recovered[record.trial_id] = log_missing_artifacts(tracking.tracking_uri, run_id, files)
    return recovered


def _trial_files(
    experiment_path: str, record: TrialRecord, resolved: Mapping[str, Any], tmp: Path
) -> dict[str, Path]:
    """Artifact path -> local copy: the reported artifacts, the regenerated config, the newest checkpoint."""
    config = tmp / "config" / "resolved.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(_plain(resolved), sort_keys=False))
    files = {"config/resolved.yaml": config}
    trial_dir = storage.join(experiment_path, record.trial_name)
    checkpoint = _newest_checkpoint(trial_dir, tmp / "checkpoint")
    if checkpoint is not None:
        files["checkpoint"] = checkpoint
    # The artifacts the trial copied beside its checkpoints (best weights): durable.py
    return {**recover_from_trial_folder(trial_dir, tmp / "reported"), **files}


def _newest_checkpoint(trial_dir: str, dest: Path) -> Path | None:
    """A local copy of the trial folder's newest ``checkpoint_NNNNNN`` (``None`` when Tune kept none)."""
    import pyarrow.fs as pafs

    folders = [d for d in storage.list_dirs(trial_dir) if d.startswith("checkpoint_")]
    if not folders:
        return None
    fs, path = storage.filesystem(storage.join(trial_dir, folders[-1]))
    target = dest / folders[-1]
    target.mkdir(parents=True)
    pafs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return dest


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """YAML-safe copy: scalars and lists stay, anything else becomes its string."""
    scalar = (bool, int, float, str, type(None))
    return {
        k: v
        if isinstance(v, scalar) or (isinstance(v, list) and all(isinstance(i, scalar) for i in v))
        else str(v)
        for k, v in values.items()
    }


def close_rebuilt(
    tracking: SearchTracking, state: dict[str, Any], experiment_path: str, *, finished: bool, resume_hint: str
) -> None:
    """Close the rebuilt parent as the search stands (FINISHED, or KILLED with ``resume_hint``); done."""
    tracking.finish("FINISHED" if finished else "KILLED", resume_hint=resume_hint)
    state.pop(PENDING_KEY, None)
    search_state.write_state(experiment_path, state)
