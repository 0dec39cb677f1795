"""``hemotune sync``: make a search's MLflow runs agree with Ray Tune's stored results."""

from __future__ import annotations

import argparse
from typing import Any

from hemotune.cli import common
from hemotune.cli.common import EXIT_OK


def add_parser(sub: Any) -> None:
    """``hemotune sync SEARCH``."""
    sync = sub.add_parser("sync", help="re-synchronise a search's MLflow runs from Ray Tune's stored results")
    sync.add_argument("search", metavar="SEARCH", help="the search name")
    sync.add_argument("--results-dir", default="hemotune_results")
    sync.add_argument("--tracking-uri")
    sync.add_argument(
        "--force",
        action="store_true",
        help="close the runs of a search marked running even if its driver may still be alive",
    )


def cmd_sync(args: argparse.Namespace) -> int:
    """``hemotune sync``: make a search's MLflow runs agree with Ray Tune's stored results."""
    from hemotune.config import RunSettings
    from hemotune.tuning import sync_search

    settings = RunSettings(results_dir=args.results_dir, tracking_uri=args.tracking_uri)
    summary = sync_search(args.search, settings, force=args.force)
    console = common.console()
    console.print(
        f"synchronised {summary['trials']} trials of {summary['experiment_path']}: "
        f"{summary['epochs_filled']} epochs filled in, {summary['runs_created']} runs created, "
        f"closed {summary['runs_closed']}, {len(summary['orphans_retired'])} orphaned runs retired"
    )
    if "rebuilt" in summary:
        recovered = sum(len(names) for names in summary["recovered"].values())
        console.print(
            f"rebuilt the MLflow tree on {summary['rebuilt']['tracking_uri']}: new parent run "
            f"{summary['rebuilt']['parent_run_id']} (recorded for --resume), {recovered} trial artifacts "
            "recovered from Tune's trial folders",
            soft_wrap=True,
        )
    if "resume" in summary:
        console.print(
            f"[yellow]interrupted[/]: its driver ({summary['driver']}) is gone; the parent run and "
            f"{summary['interrupted_runs']} runs of unfinished trials are closed as KILLED (interrupted). "
            f"Continue with `{summary['resume']}`",
            soft_wrap=True,
        )
    return EXIT_OK
