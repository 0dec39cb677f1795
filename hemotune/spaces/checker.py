"""The problem collector every section validator writes to.

A space is checked section by section; each problem is recorded as ``key: message``
and all of them are raised together, so one run of ``hemotune spaces validate``
shows everything that is wrong with a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hemotune.errors import SpaceValidationError


def is_number(value: Any) -> bool:
    """An int or float, but not a bool (YAML's ``true`` is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Checker:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, key: str, message: str) -> None:
        """Record that ``key`` (a dotted path into the document) has a problem."""
        self.problems.append(f"{key}: {message}")

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        """``value`` as a section mapping; ``None`` is an empty section, anything else a problem."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(key, f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def unknown_keys(self, section: Mapping[str, Any], path: str, allowed: Any, listed: str) -> None:
        """Report each key of ``section`` not in ``allowed``, sorted, naming the ``listed`` ones."""
        for extra in sorted(set(section) - set(allowed)):
            self.add(f"{path}.{extra}", f"unknown key; allowed: {listed}")

    def number(
        self,
        section: Mapping[str, Any],
        key: str,
        path: str,
        default: Any,
        *,
        integer: bool = False,
        minimum: float | None = None,
        exclusive: bool = False,
    ) -> Any:
        """``section[key]`` checked as a number (``default`` when absent or invalid)."""
        value = section.get(key, default)
        if value is None:
            return default
        if integer and (not isinstance(value, int) or isinstance(value, bool)):
            self.add(f"{path}.{key}", f"must be an integer, got {value!r}")
            return default
        if not is_number(value):
            self.add(f"{path}.{key}", f"must be a number, got {value!r}")
            return default
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            self.add(f"{path}.{key}", f"must be {'>' if exclusive else '>='} {minimum}, got {value!r}")
            return default
        return value

    def raise_if_any(self) -> None:
        """Raise a ``SpaceValidationError`` listing every problem, if there is one."""
        if self.problems:
            raise SpaceValidationError(self.source, self.problems)
