"""Metric names and values as every layer sees them: MLflow-safe keys and finite numbers.

Trainers name their per-class metrics with ``metric_key`` (a class called
``Band neutrophil`` or ``Platelets (PLT)``), the tracking layer logs exactly those
keys, and the results layer reads them back: one rule, one function. Pure Python:
importable from anywhere without importing MLflow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

#: Characters MLflow accepts in metric and param names; anything else becomes ``_``.
_UNSAFE_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-./ :]")


def metric_key(name: str) -> str:
    """A metric or param name MLflow accepts (alphanumerics, ``_ - . / space :``)."""
    return _UNSAFE_KEY_CHARS.sub("_", name)


def best_key(metric: str) -> str:
    """The name under which the best epoch's value of ``metric`` is logged (``best/<metric>``)."""
    return metric_key(f"best/{metric}")


def is_finite_number(value: Any) -> bool:
    """A real, finite number (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numeric, finite entries of ``metrics`` as floats under MLflow-safe keys (bools count as 0/1)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[metric_key(key)] = float(value)
    return out
