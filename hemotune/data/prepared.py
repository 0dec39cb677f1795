"""What preparing a dataset hands to every trial: one path and one content fingerprint.

It lives in the data layer (not with the trainer contract) because the data
readers build it; ``hemotune.trainers.base`` re-exports it for trainers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """A dataset made ready for trials: same path and fingerprint for every trial."""

    path: Path
    fingerprint: str
    source: str
    summary: Mapping[str, Any] = field(default_factory=dict)
    report_path: Path | None = None


def with_test_summary(data: PreparedData, classes: Sequence[str], counts: Mapping[str, int]) -> PreparedData:
    """``data`` with ``summary["missing_classes"]``: the training classes with no test image (or box), warned.

    A class the test split lacks has no per-class metric there; saying so here and
    in the evaluation keeps it from silently dropping out of (or zeroing) an average.
    """
    missing = [c for c in classes if not counts.get(c)]
    if missing:
        log.warning(
            "test set %s has nothing of class(es) %s: they are not evaluated", data.source, ", ".join(missing)
        )
    summary = {**dict(data.summary), "test_counts": dict(counts), "missing_classes": missing}
    return replace(data, summary=summary)
