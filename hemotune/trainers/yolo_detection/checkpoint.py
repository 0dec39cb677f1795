"""The checkpoint a ``yolo_detection`` trial reports each epoch, and the check before resuming from it.

A checkpoint folder ``epoch-NNNN`` holds Ultralytics' ``last.pt`` and
``results.csv`` and hemotune's state file (the epoch, the resolved parameters,
the best epoch so far). Ultralytics resumes with the checkpoint's own
arguments, so resuming is refused unless they are this trial's.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hemotune.errors import TrialConfigurationError

STATE_FILE = "hemotune_state.json"
#: 2: the best epoch is stored with its objective and metrics (``BestEpoch.state()``).
STATE_VERSION = 2
#: Parameters whose change between a checkpoint and its resumption does not change the run.
RESUME_MAY_DIFFER = frozenset({"data", "workers"})


def checkpoint_epoch(checkpoint: Path) -> int:
    """The epoch a checkpoint folder written by this trainer was taken after."""
    return int(json.loads((Path(checkpoint) / STATE_FILE).read_text())["epoch"])


def write_checkpoint(
    root: Path,
    epoch: int,
    *,
    last: Path,
    results_csv: Path,
    resolved: Mapping[str, Any],
    best: Mapping[str, Any],
) -> Path:
    """``root/epoch-NNNN`` with ``last``, ``results_csv`` and the state; checkpoints older than the last two go."""
    folder = root / f"epoch-{epoch:04d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copyfile(last, folder / "last.pt")
    if results_csv.is_file():
        shutil.copyfile(results_csv, folder / "results.csv")
    state = {
        "version": STATE_VERSION,
        "epoch": epoch,
        "params": {k: v for k, v in resolved.items() if k != "data"},
        "best": dict(best),
    }
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2, default=str))
    for old in root.glob("epoch-*"):
        if old.name < f"epoch-{epoch - 1:04d}":
            shutil.rmtree(old, ignore_errors=True)
    return folder


def read_checkpoint_state(checkpoint: Path, resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The state of ``checkpoint``, once it is known to have been written for these parameters."""
    state_path = checkpoint / STATE_FILE
    if not state_path.is_file() or not (checkpoint / "last.pt").is_file():
        raise TrialConfigurationError(
            f"{checkpoint}: not a yolo_detection checkpoint (no {STATE_FILE}/last.pt)"
        )
    state: dict[str, Any] = json.loads(state_path.read_text())
    if state.get("version") != STATE_VERSION:
        raise TrialConfigurationError(
            f"{checkpoint}: checkpoint format {state.get('version')}, this hemotune reads {STATE_VERSION}"
        )
    saved = {k: v for k, v in state["params"].items() if k not in RESUME_MAY_DIFFER}
    wanted = {k: v for k, v in resolved.items() if k not in RESUME_MAY_DIFFER}
    differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if differ:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in differ)
        raise TrialConfigurationError(
            f"{checkpoint} was written with other parameters ({detail}); Ultralytics resumes the "
            "checkpoint's own, so resuming would not run this trial's configuration"
        )
    return state
