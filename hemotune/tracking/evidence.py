"""Evidence files on a search's parent run (``evaluation.json``/``.md``, ``ablation.json``/``.md``).

And the one per-run file the statistics read back: a child run's per-image test statistics
(``evaluation/per_image.npz``, arrays only: read without pickle).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hemotune.tracking.client import short_error
from hemotune.tracking.parent import SearchTracking

log = logging.getLogger(__name__)


def record_evidence(tracking: SearchTracking, files: Sequence[Path], tags: Mapping[str, Any]) -> None:
    """Attach ``files`` at the root of the parent run's artifacts and set ``tags`` on it."""
    for path in files:
        tracking.log_artifact(path)
    tracking.set_tags(tags)


def _download(tracking: SearchTracking, run_id: str, artifact_path: str, folder: str) -> Path | None:
    """A run's artifact downloaded into ``folder``; ``None`` when it has none (or it cannot be read)."""
    try:
        return Path(tracking.client.download_artifacts(run_id, artifact_path, folder))
    except Exception as exc:
        log.info("no %s on run %s: %s", artifact_path, run_id, short_error(exc))
        return None


def load_arrays_artifact(tracking: SearchTracking, run_id: str, artifact_path: str) -> dict[str, Any] | None:
    """A run's ``.npz`` artifact as ``name -> numpy array`` (no pickle); ``None`` when it has none."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="hemotune-artifact-") as folder:
        local = _download(tracking, run_id, artifact_path, folder)
        if local is None:
            return None
        with np.load(local, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
