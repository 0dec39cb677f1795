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

The trial process also keeps its own record of the epochs it reported, ``EPOCH_RECORD_FILE``
in the same folder (``EpochRecord``): Ray Tune's ``result.json`` is written by the driver and
uploaded with the driver's folder, copy over copy (not atomic), so a driver killed during an
upload can leave a finished trial's ``result.json`` in storage cut short, and a resumed
search downloads and continues that copy. ``hemotune.results`` fills the epochs Tune's copy
lacks from this record. Measured in ``tests/tuning_tests/test_resume.py`` (SIGKILL).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hemotune import storage
from hemotune.results import EPOCH_RECORD_FILE

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


class EpochRecord:
    """In a trial process: each reported epoch appended to ``EPOCH_RECORD_FILE`` in the trial's Tune folder.

    The whole file is rewritten after each epoch under a temporary name and moved into place
    (a rename on a local disk, one object copy on S3), so a reader never sees it cut short.
    A restored trial first reads what its earlier processes recorded; an epoch it reports
    again keeps its first record, as MLflow and ``hemotune.results`` do. A failed write is a
    warning, never a failed trial.
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] | None = None

    def append(self, metrics: Mapping[str, Any]) -> None:
        try:
            from ray import tune

            context = tune.get_context().get_storage()
            fs, path = context.storage_filesystem, f"{context.trial_fs_path}/{EPOCH_RECORD_FILE}"
            if self._rows is None:
                self._rows = _read_rows(fs, path)
            epoch = int(metrics.get("epoch", len(self._rows) + 1))
            if any(int(row.get("epoch", -1)) == epoch for row in self._rows):
                return
            self._rows.append({**dict(metrics), "epoch": epoch, "timestamp": time.time()})
            _write_whole(fs, path, "".join(json.dumps(row) + "\n" for row in self._rows))
        except Exception as exc:  # Tune's result.json and MLflow hold the epoch too
            log.warning("could not record the epoch in the trial's folder in storage: %s", exc)


def _read_rows(fs: Any, path: str) -> list[dict[str, Any]]:
    text = storage.read_fs_text(fs, path) or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _write_whole(fs: Any, path: str, text: str) -> None:
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(temporary) as out:
        out.write(text.encode())
    fs.move(temporary, path)
