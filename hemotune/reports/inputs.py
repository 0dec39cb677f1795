"""Everything a search report shows, gathered once: Tune's trials, the MLflow parent run, local files.

Trials come from Ray Tune's stored files through ``hemotune.results`` (no Ray);
the parent run's times, tags and data report through ``hemotune.tracking.views``
(optional: without MLflow the report says so); the best trial's confusion matrix
from the exported best trial (``<local dir>/best``) or its MLflow run; evaluation,
ablation and Pareto results from ``<local dir>/{evaluation,ablation,pareto}.json``
when other commands wrote them.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotune._version import __version__
from hemotune.config import SearchSpace
from hemotune.results import RankedTrial, TrialRecord, rank_trials, read_trials
from hemotune.tracking.views import RunView, fetch_run_files, parent_run_view

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.tracking import SearchTracking

log = logging.getLogger(__name__)

#: Result files other commands write beside the experiment, shown when present.
RESULT_FILES = ("evaluation", "ablation", "pareto")
#: Files of the best trial's run the report shows (the classification trainer logs them).
BEST_FILES = ("confusion_matrix.json", "confusion_matrix.png")
#: Libraries whose versions the summary lists (read from package metadata: nothing is imported).
LIBRARIES = ("ray", "optuna", "mlflow", "torch", "ultralytics", "timm", "numpy", "scikit-learn", "matplotlib")


@dataclass(frozen=True)
class ReportInputs:
    """One search as the report sees it."""

    space: SearchSpace
    experiment_path: str
    local_dir: Path
    records: list[TrialRecord]
    ranking: list[RankedTrial]
    state: Mapping[str, Any] = field(default_factory=dict)
    run: RunView | None = None
    tracking_uri: str | None = None
    best_files: Mapping[str, bytes] = field(default_factory=dict)
    results: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    generated: str = ""

    @property
    def best(self) -> RankedTrial | None:
        """The first-ranked trial, if it has an objective value."""
        return self.ranking[0] if self.ranking and self.ranking[0].best_value is not None else None


def gather(
    space: SearchSpace,
    experiment_path: str,
    local_dir: Path,
    tracking: SearchTracking | None,
    state: Mapping[str, Any] | None,
) -> ReportInputs:
    """Read the search at ``experiment_path`` (and its MLflow runs when ``tracking`` is given)."""
    records = read_trials(experiment_path, space)
    ranking = rank_trials(records, space, _run_ids(tracking))
    best = ranking[0] if ranking and ranking[0].best_value is not None else None
    return ReportInputs(
        space=space,
        experiment_path=experiment_path,
        local_dir=local_dir,
        records=records,
        ranking=ranking,
        state=dict(state or {}),
        run=parent_run_view(tracking.tracking_uri, tracking.parent_run_id) if tracking else None,
        tracking_uri=tracking.tracking_uri if tracking else None,
        best_files=_best_files(local_dir, best, tracking),
        results=_result_files(local_dir),
        versions=versions(),
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )


def _run_ids(tracking: SearchTracking | None) -> dict[str, str]:
    """trial id -> child run id (empty without MLflow, or when it cannot be reached)."""
    if tracking is None:
        return {}
    try:
        return tracking.child_run_ids()
    except Exception as exc:
        log.warning("report without MLflow run ids: %s", exc)
        return {}


def _best_files(
    local_dir: Path, best: RankedTrial | None, tracking: SearchTracking | None
) -> dict[str, bytes]:
    """The best trial's confusion matrix files: from the exported best trial, else from its run."""
    if best is None:
        return {}
    exported = local_dir / "best"
    found = {name: (exported / name).read_bytes() for name in BEST_FILES if (exported / name).is_file()}
    if found or tracking is None or not best.run_id:
        return found
    with tempfile.TemporaryDirectory(prefix="hemotune-report-") as tmp:
        files = fetch_run_files(tracking.tracking_uri, best.run_id, BEST_FILES, Path(tmp))
        return {name: path.read_bytes() for name, path in files.items()}


def _result_files(local_dir: Path) -> dict[str, Any]:
    """name -> parsed document of the evaluation / ablation / Pareto files present."""
    found = {}
    for name in RESULT_FILES:
        path = local_dir / f"{name}.json"
        if path.is_file():
            try:
                found[name] = json.loads(path.read_text())
            except ValueError as exc:
                log.warning("report leaves out %s: not JSON (%s)", path, exc)
    return found


def versions() -> dict[str, str]:
    """hemotune, Python and the libraries' installed versions (``-`` when not installed)."""
    found = {"hemotune": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "-"
    return found
