"""hemotune's own record of a search, kept beside Ray Tune's experiment: ``hemotune_search.json``.

It holds what ``--resume`` and ``hemotune sync`` need and Ray Tune does not keep:
the validated search-space document (so a resumed search runs the space it was
started with), the dataset fingerprint, the MLflow parent run, and a status.
Read and written through ``hemotune.storage``, so a search stored on S3 can be
resumed from any machine. No Ray here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotune import storage
from hemotune.config import SearchSpace
from hemotune.errors import UsageError
from hemotune.spaces import space_document, validate_space

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.data.prepared import PreparedData
    from hemotune.tracking import SearchTracking

STATE_FILE = "hemotune_search.json"


def local_dir(path: str, fallback: Path) -> Path:
    """Where local files for ``path`` go: ``path`` itself when it is a folder, else ``fallback``.

    A URI (``s3://...``) cannot hold the embedded MLflow store or the exported best
    model, so those go to a local folder instead (the CLI's ``--local-dir``).
    """
    return fallback if storage.is_uri(path) else Path(path).expanduser().resolve()


def new_experiment_name(space: SearchSpace) -> str:
    """``<search name>-<local time>``: the Tune experiment of a new search execution."""
    return f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_state(experiment_path: str) -> dict[str, Any] | None:
    """The state file of the experiment at ``experiment_path`` (``None`` when it has none)."""
    state = storage.read_json(storage.join(experiment_path, STATE_FILE))
    return state if isinstance(state, dict) else None


def write_state(experiment_path: str, state: dict[str, Any]) -> None:
    """Store ``state`` as the experiment's state file (replacing the previous one)."""
    storage.write_json(storage.join(experiment_path, STATE_FILE), state)


def find_resumable(results_dir: str, name: str) -> str:
    """The experiment path of the most recent search called ``name`` under ``results_dir``."""
    root = storage.normalize_storage(results_dir)
    candidates = [d for d in storage.list_dirs(root) if d.startswith(f"{name}-")]
    for candidate in reversed(candidates):
        path = storage.join(root, candidate)
        if read_state(path) is not None:
            return path
    raise UsageError(f"nothing to resume: no search named {name!r} under {root}")


def load_resumable_space(results_dir: str, name: str) -> tuple[SearchSpace, str]:
    """The space a search was started with (its stored document, re-validated) and its path."""
    path = find_resumable(results_dir, name)
    state = read_state(path) or {}
    space = validate_space(
        state["space"],
        state["space_source"],
        source_hash=state["space_hash"],
        preset=state.get("preset"),
        overrides=state.get("overrides", ()),
    )
    return space, path


def new_state(
    space: SearchSpace, tune_experiment: str, prepared: PreparedData, tracking: SearchTracking
) -> dict[str, Any]:
    """The state of a search execution that is starting now."""
    return {
        "name": space.name,
        "tune_experiment": tune_experiment,
        "space": space_document(space),
        "space_source": space.source,
        "space_hash": space.source_hash,
        "preset": space.preset,
        "overrides": list(space.overrides),
        "dataset_hash": prepared.fingerprint,
        "data_path": str(prepared.path),
        "tracking_uri": tracking.tracking_uri,
        "experiment_id": tracking.experiment_id,
        "parent_run_id": tracking.parent_run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
