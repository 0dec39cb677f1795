"""What preparing a dataset hands to every trial: one path and one content fingerprint.

It lives in the data layer (not with the trainer contract) because the data
readers build it; ``hemotune.trainers.base`` re-exports it for trainers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PreparedData:
    """A dataset made ready for trials: same path and fingerprint for every trial."""

    path: Path
    fingerprint: str
    source: str
    summary: Mapping[str, Any] = field(default_factory=dict)
    report_path: Path | None = None
