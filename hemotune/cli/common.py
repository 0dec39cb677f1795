"""What every command shares: exit codes and the console (rich is imported only when a command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from hemotune.config import RunSettings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def console() -> Console:
    """The console every command prints to (rich is imported only when a command runs)."""
    from hemotune.reports import console as make_console

    return make_console()


def run_settings(args: argparse.Namespace, **extra: Any) -> RunSettings:
    """Where a command's Ray run goes and where its MLflow store is, from its common options.

    ``--local-dir``, else ``--results-dir`` when it is a folder, else ./hemotune_results; ``extra``
    sets the command's own fields (progress display, experiment name, ...).
    """
    from hemotune.config import RunSettings
    from hemotune.tuning.state import local_dir

    return RunSettings(
        results_dir=args.results_dir,
        tracking_uri=args.tracking_uri,
        address=args.address,
        resume=args.resume,
        local_dir=Path(args.local_dir).expanduser().resolve()
        if args.local_dir
        else local_dir(args.results_dir, Path("hemotune_results").resolve()),
        num_cpus=args.num_cpus,
        **extra,
    )
