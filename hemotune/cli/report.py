"""``hemotune report``: the self-contained HTML report of a search (without Ray)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hemotune.cli import common
from hemotune.cli.common import EXIT_OK


def add_parser(sub: Any) -> None:
    """``hemotune report SEARCH [--results-dir DIR] [--tracking-uri URI] [--out FILE]``."""
    report = sub.add_parser(
        "report",
        help="write a search's HTML report (opens offline) and log it to its parent MLflow run",
        description="Write report.html for the most recent search called SEARCH: summary, ranked trials, "
        "optimisation history, parameter importances, learning curves, the best trial, and "
        "evaluation/ablation/Pareto results when present. The file needs no network to open.",
    )
    report.add_argument("search", metavar="SEARCH", help="the search name")
    report.add_argument("--results-dir", default="hemotune_results")
    report.add_argument("--tracking-uri", help="MLflow store (default: the one the search used)")
    report.add_argument(
        "--local-dir",
        type=Path,
        default=Path("hemotune_results"),
        help="local folder of a search stored on s3:// (where report.html goes)",
    )
    report.add_argument(
        "--out", type=Path, help="where to write the page (default: <experiment>/report.html)"
    )
    report.add_argument("--no-mlflow", action="store_true", help="read nothing from MLflow and log nothing")


def cmd_report(args: argparse.Namespace) -> int:
    """``hemotune report``: read the search's stored space, trials and MLflow runs; write the page."""
    from hemotune.errors import UsageError
    from hemotune.offline import apply_offline_env
    from hemotune.reports import write_search_report
    from hemotune.tracking import SearchTracking
    from hemotune.tuning.state import load_resumable_space, local_dir, read_state

    apply_offline_env()  # MLflow without telemetry or download progress bars
    try:
        space, experiment_path = load_resumable_space(args.results_dir, args.search)
    except UsageError:
        raise UsageError(
            f"no search named {args.search!r} under {args.results_dir} (pass the --results-dir it ran with)"
        ) from None
    state = read_state(experiment_path) or {}
    folder = local_dir(experiment_path, args.local_dir.expanduser().resolve() / Path(experiment_path).name)
    tracking = None
    if not args.no_mlflow:
        uri = args.tracking_uri or state["tracking_uri"]
        tracking = SearchTracking(uri, state["experiment_id"], state["parent_run_id"])
    out = write_search_report(space, experiment_path, folder, tracking, state, args.out)
    logged = f" and logged to MLflow run {state['parent_run_id']}" if tracking else ""
    common.console().print(f"report: {out}{logged}", soft_wrap=True)
    return EXIT_OK
