"""What every command shares: exit codes and the console (rich is imported only when a command runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def console() -> Console:
    """The console every command prints to (rich is imported only when a command runs)."""
    from hemotune.reports import console as make_console

    return make_console()
