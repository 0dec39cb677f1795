"""The best epoch of a trial, chosen by the search objective.

Every trainer keeps one ``BestEpoch``: after each epoch ``update`` says whether
that epoch is the new best (and so whether to write ``weights/best.pt``), and
``summary`` gives the ``best/<metric>`` values of the best epoch. The metric and
direction are the search objective's (``TrialContext.best_epoch``), so the
weights a search exports are the best by the metric it optimises, not by a
metric fixed in the trainer. The first epoch is always a best; a later one only
when strictly better (a NaN never is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hemotune.errors import TrialConfigurationError, UsageError
from hemotune.metrics import best_key

#: Objective directions: higher is better (``max``) or lower is better (``min``).
MODES = ("max", "min")


@dataclass
class BestEpoch:
    """The best epoch so far by ``metric`` (``mode`` ``max`` or ``min``) and that epoch's metrics."""

    metric: str
    mode: str = "max"
    epoch: int = 0
    value: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    def is_better(self, value: float) -> bool:
        """Whether an epoch scoring ``value`` beats the best so far (the first epoch always does)."""
        if not self.epoch:
            return True
        return value > self.value if self.mode == "max" else value < self.value

    def update(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record ``epoch`` if it is the new best by ``metric``; ``True`` when it is."""
        if self.metric not in metrics:
            raise UsageError(
                f"objective {self.metric!r} is not among the reported metrics: {', '.join(sorted(metrics))}"
            )
        value = float(metrics[self.metric])
        if not self.is_better(value):
            return False
        self.epoch, self.value, self.metrics = int(epoch), value, {k: float(v) for k, v in metrics.items()}
        return True

    def summary(self, names: Iterable[str] | None = None) -> dict[str, float]:
        """``best/<name>`` at the best epoch (0.0 before any) for ``names`` (default: all but ``epoch``)."""
        chosen = [k for k in self.metrics if k != "epoch"] if names is None else list(dict.fromkeys(names))
        return {best_key(k): float(self.metrics.get(k, 0.0)) for k in chosen}

    def state(self) -> dict[str, Any]:
        """A JSON- and torch-serialisable snapshot for a checkpoint (``best_*`` keys, so it can sit in one)."""
        return {
            "best_metric": self.metric,
            "best_mode": self.mode,
            "best_epoch": self.epoch,
            "best_value": self.value,
            "best_metrics": dict(self.metrics),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's ``state()``; it must have been chosen by the same objective."""
        saved = (state.get("best_metric"), state.get("best_mode"))
        if saved != (self.metric, self.mode):
            raise TrialConfigurationError(
                f"the checkpoint chose its best epoch by {saved[0]!r} ({saved[1]}), this trial by "
                f"{self.metric!r} ({self.mode}): resuming would mix two objectives"
            )
        self.epoch, self.value = int(state["best_epoch"]), float(state["best_value"])
        self.metrics = {k: float(v) for k, v in state["best_metrics"].items()}
