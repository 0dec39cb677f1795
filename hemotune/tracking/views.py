"""Read-only views of a search's MLflow runs, for presenting a search (the HTML report).

The report needs a few things only the parent run holds (when it started and
ended, its tags, the data summary and data report logged with it) and one file
of the best trial's run (its confusion matrix). Reading them never raises: a
report written without MLflow, or against a store that cannot be reached, says
so instead of failing.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hemotune.tracking.client import client_for, short_error

log = logging.getLogger(__name__)

#: Files of the parent run the report shows (``log_search_inputs`` logs them).
DATA_SUMMARY = "data/summary.yaml"
DATA_REPORT = "data/data_report.json"


@dataclass(frozen=True)
class RunView:
    """What the report shows of a search's parent run."""

    run_id: str
    status: str
    start_ms: int | None
    end_ms: int | None
    tags: Mapping[str, str] = field(default_factory=dict)
    data_summary: Mapping[str, Any] = field(default_factory=dict)
    data_report: Mapping[str, Any] = field(default_factory=dict)


def parent_run_view(tracking_uri: str, run_id: str) -> RunView | None:
    """The parent run ``run_id`` with its data summary and data report; ``None`` if unreadable."""
    try:
        client = client_for(tracking_uri)
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory(prefix="hemotune-report-") as tmp:
            summary = _download_text(client, run_id, DATA_SUMMARY, Path(tmp))
            report = _download_text(client, run_id, DATA_REPORT, Path(tmp))
    except Exception as exc:  # the report says MLflow was not readable instead of failing
        log.warning("could not read MLflow run %s at %s: %s", run_id, tracking_uri, short_error(exc))
        return None
    return RunView(
        run_id=run_id,
        status=str(run.info.status),
        start_ms=run.info.start_time,
        end_ms=run.info.end_time,
        tags=dict(run.data.tags),
        data_summary=_mapping(yaml.safe_load(summary) if summary else None),
        data_report=_mapping(json.loads(report) if report else None),
    )


def fetch_run_files(tracking_uri: str, run_id: str, paths: Sequence[str], dest: Path) -> dict[str, Path]:
    """Download the artifacts ``paths`` of run ``run_id`` into ``dest``: path -> local file (those found)."""
    found: dict[str, Path] = {}
    try:
        client = client_for(tracking_uri)
        names = {a.path for a in client.list_artifacts(run_id)}
        dest.mkdir(parents=True, exist_ok=True)
        for path in paths:
            if path in names:
                found[path] = Path(client.download_artifacts(run_id, path, str(dest)))
    except Exception as exc:
        log.warning("could not download artifacts of run %s: %s", run_id, short_error(exc))
    return found


def _download_text(client: Any, run_id: str, path: str, dest: Path) -> str | None:
    """The text of artifact ``path`` of the run, ``None`` when the run has no such file."""
    folder = path.rsplit("/", 1)[0] if "/" in path else None
    if path not in {a.path for a in client.list_artifacts(run_id, folder)}:
        return None
    return Path(client.download_artifacts(run_id, path, str(dest))).read_text()


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}
