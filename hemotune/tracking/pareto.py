"""The Pareto front in MLflow: ``hemotune.pareto=true`` on each Pareto-optimal child, ``pareto.json`` on the parent.

Tagging is idempotent: a resumed search re-tags the children of its new front and
removes the tag from children that left it.
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
from hemotune.tracking.runs import child_runs

log = logging.getLogger(__name__)
TAG_PARETO = "hemotune.pareto"
TAG_PARETO_SIZE = "hemotune.pareto_size"
PARETO_FILE = "pareto.json"


def record_pareto(tracking: SearchTracking, doc: Mapping[str, Any], files: Sequence[Path]) -> None:
    """Tag the front's child runs, attach ``files`` to the parent and tag the parent with the front's size."""
    front = {str(c["run_id"]) for c in doc["front"] if c.get("run_id")}
    client = tracking.client
    for run in child_runs(client, tracking.experiment_id, tracking.parent_run_id):
        run_id = run.info.run_id
        if run_id in front:
            client.set_tag(run_id, TAG_PARETO, "true")
        elif TAG_PARETO in run.data.tags:
            client.delete_tag(run_id, TAG_PARETO)
    for path in files:
        tracking.log_artifact(path)
    tracking.set_tags({TAG_PARETO_SIZE: len(doc["front"])})


def read_pareto(client: Any, parent_run_id: str) -> dict[str, Any] | None:
    """The parent run's ``pareto.json``; ``None`` when it has none (not a multi-objective search)."""
    with tempfile.TemporaryDirectory(prefix="hemotune-pareto-") as folder:
        try:
            local = client.download_artifacts(parent_run_id, PARETO_FILE, folder)
        except Exception as exc:
            log.info("no %s on run %s: %s", PARETO_FILE, parent_run_id, short_error(exc))
            return None
        doc: dict[str, Any] = json.loads(Path(local).read_text())
        return doc
