"""Exceptions with a meaning the CLI maps to exit codes.

``UsageError`` and its subclasses are the user's to fix (exit code 2): a malformed
search space, a missing dataset, a bad ``--set``. Anything else that escapes is a
runtime failure (exit code 1).
"""

from __future__ import annotations


class HemotuneError(Exception):
    """Base class of every error hemotune raises on purpose."""


class UsageError(HemotuneError):
    """Bad input the user can fix; the CLI exits with code 2."""


class SpaceValidationError(UsageError):
    """A search-space file is malformed; the message names the file and every bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid search space {source}:\n{lines}")


class DataError(UsageError):
    """A dataset is missing or unusable; the message names the path."""


class MissingDependencyError(UsageError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this needs the '{package}' package, which is not installed: pip install 'hemotune[{extra}]'"
        )


class TrialConfigurationError(HemotuneError):
    """A trial would not run the configuration it was given (e.g. a library changed it)."""
