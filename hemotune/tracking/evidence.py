"""Evidence files on a search's parent run (``evaluation.json``/``.md``, ``ablation.json``/``.md``).

And the one per-run file the statistics read back: a child run's per-image test scores.
"""

from __future__ import annotations

import json
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


def load_json_artifact(tracking: SearchTracking, run_id: str, artifact_path: str) -> Any | None:
    """A run's JSON artifact, parsed; ``None`` when it has none (or it cannot be read)."""
    with tempfile.TemporaryDirectory(prefix="hemotune-artifact-") as folder:
        try:
            local = tracking.client.download_artifacts(run_id, artifact_path, folder)
        except Exception as exc:
            log.info("no %s on run %s: %s", artifact_path, run_id, short_error(exc))
            return None
        return json.loads(Path(local).read_text())
