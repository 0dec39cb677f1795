"""A trial's reported artifacts (its best weights) copied into its Tune trial folder, which outlives the head.

A trial writes its best weights to its local work folder and logs them to MLflow.
When the head node is lost with its MLflow server and store, neither copy is reachable
by a rebuilt tree: the work folder is on a (maybe also lost) worker, and the old
server's artifacts in S3 are named by run ids that went with the store. Ray Tune's
trial folder in the experiment's storage (S3 on a cluster) is what survives, so every
artifact a trainer reports (``report(..., artifacts=...)``: ``weights/best.pt``, the
best epoch's confusion matrix) is also copied to ``<trial folder>/hemotune_artifacts/
<name>``, the newest file under a name replacing the older one, before the epoch is
reported to Tune: a checkpoint Tune records never names an epoch whose artifacts are
missing. ``hemotune sync`` logs them to the rebuilt child runs
(``hemotune.tuning.rebuild``). A failed copy is a warning, never a failed trial.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from hemotune import storage

log = logging.getLogger(__name__)

#: The folder, inside a trial's Tune folder, holding its reported artifacts under their artifact paths.
DURABLE_ARTIFACTS = "hemotune_artifacts"


def copy_to_trial_folder(artifacts: Mapping[str, Path]) -> None:
    """In a trial process: copy ``artifacts`` (artifact path -> local file) to the trial's Tune folder.

    The folder and its file system are the ones Tune stores the trial's checkpoints with
    (``ray.tune.get_context().get_storage()``), so a custom S3 endpoint is honoured the same way.
    """
    if not artifacts:
        return
    import pyarrow.fs as pafs
    from ray import tune

    try:
        context = tune.get_context().get_storage()
        fs, root = context.storage_filesystem, f"{context.trial_fs_path}/{DURABLE_ARTIFACTS}"
        for name, path in artifacts.items():
            target = f"{root}/{name}"
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(
                str(path), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
            )
    except Exception as exc:  # the artifacts are in MLflow too: a storage hiccup must not fail training
        log.warning("could not copy %s to the trial's folder in storage: %s", ", ".join(artifacts), exc)


def recover_from_trial_folder(trial_dir: str, dest: Path) -> dict[str, Path]:
    """Artifact path -> local copy (under ``dest``) of what a trial copied to ``trial_dir``'s folder.

    ``trial_dir`` is the trial's Tune folder (local path or ``s3://`` URI); empty when it holds none
    (searches run before this version, or a trial that never improved).
    """
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(storage.join(trial_dir, DURABLE_ARTIFACTS))
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return {}
    dest.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return {p.relative_to(dest).as_posix(): p for p in sorted(dest.rglob("*")) if p.is_file()}
