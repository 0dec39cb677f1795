"""``hemotune search``: what to search, where to run it, and the ranking it ends with."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotune.cli import common
from hemotune.cli.common import EXIT_INTERRUPTED, EXIT_OK
from hemotune.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from hemotune.config import RunSettings, SearchSpace
    from hemotune.tuning import SearchOutcome


def add_parser(sub: Any) -> None:
    """``hemotune search``: what to search and where to run it."""
    search = sub.add_parser("search", help="run a search (locally or on a Ray cluster)")
    search.add_argument(
        "space", metavar="NAME_OR_FILE", help="a search-space name (see `hemotune spaces list`) or YAML file"
    )
    search.add_argument(
        "--preset", help="apply a preset of the space, e.g. smoke (tiny budget for a quick check)"
    )
    search.add_argument("--data", help="dataset folder or s3://bucket/prefix (overrides dataset.path)")
    search.add_argument(
        "--results-dir",
        default="hemotune_results",
        help="where Ray Tune keeps experiments: a folder or s3://bucket/prefix (default: ./hemotune_results)",
    )
    search.add_argument(
        "--local-dir",
        help="local folder for the embedded MLflow store and exported best model "
        "(default: --results-dir when it is a folder, else ./hemotune_results)",
    )
    search.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (default: embedded SQLite store in the local folder)",
    )
    search.add_argument("--mlflow-experiment", help="MLflow experiment name (default: the search name)")
    search.add_argument(
        "--address",
        help="Ray cluster address to join, e.g. 10.0.0.5:6379 or auto (default: start a local Ray)",
    )
    search.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
    search.add_argument(
        "--resource-timeout",
        type=float,
        metavar="SECONDS",
        help="on a cluster, how long to wait for a node that can hold a trial before exiting "
        "(default: 900 where an autoscaler node type could; a trial no node could ever hold fails at once)",
    )
    search.add_argument("--num-samples", type=int, help="number of trials (overrides budget.num_samples)")
    search.add_argument(
        "--max-concurrent", type=int, help="trials at a time (overrides budget.max_concurrent)"
    )
    search.add_argument(
        "--resume", action="store_true", help="continue the most recent interrupted run of this search"
    )
    search.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any key of the space, e.g. --set fixed.imgsz=320 --set budget.epochs=30 (repeatable)",
    )
    search.add_argument("--no-progress", action="store_true", help="no live progress display")
    search.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and trial logs",
    )


def _space_name(name_or_file: str) -> str:
    """The ``name`` a space file declares (else its file name): what ``--resume`` looks for.

    A bare name that is no space file (a search started from a file elsewhere) is the search name.
    """
    from hemotune.spaces import find_space_file, read_space_file

    try:
        path = find_space_file(name_or_file)
    except UsageError:
        if Path(name_or_file).suffix in (".yaml", ".yml") or os.sep in name_or_file:
            raise
        return name_or_file
    raw, _ = read_space_file(path)
    name = raw.get("name") if isinstance(raw, dict) else None
    return str(name or path.stem)


def cmd_search(args: argparse.Namespace) -> int:
    """``hemotune search``: run (or resume) a search and print its ranking."""
    from hemotune.tuning import run_search
    from hemotune.tuning.search import resume_command

    console = common.console()
    space = _search_space(args, console)
    for line in header_lines(space):
        console.print(line)
    settings = _run_settings(args)
    outcome = run_search(space, settings, announce=lambda message: console.print(message))
    _print_outcome(console, outcome, space)
    _print_summaries(console, outcome, settings)
    if outcome.interrupted:
        console.print(
            f"[yellow]search interrupted[/]: continue with `{resume_command(space.name, args.results_dir)}`",
            soft_wrap=True,  # a command to copy: never broken across lines
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


def header_lines(space: SearchSpace) -> list[str]:
    """The search's header: what runs and how much, in two lines that fit a 100-column terminal."""
    b = space.budget
    preset = f", preset {space.preset}" if space.preset else ""
    scheduler = getattr(getattr(space, "search", None), "scheduler", "asha")
    rungs = f"; ASHA grace {b.grace_period} / reduction {b.reduction_factor:g}" if scheduler == "asha" else ""
    objectives = getattr(space, "objectives", ()) or (space.objective,)
    named = ", ".join(f"{o.metric} ({o.mode})" for o in objectives)
    return [
        f"[bold]{space.name}[/] ({space.trainer}{preset}): "
        f"{b.num_samples} trials x {b.epochs} epochs, {b.max_concurrent} at a time",
        f"  {'objectives' if len(objectives) > 1 else 'objective'} {named}; "
        f"{space.resources.cpu:g} CPU + {space.resources.gpu:g} GPU per trial{rungs}",
    ]


def _search_space(args: argparse.Namespace, console: Console) -> SearchSpace:
    """The space to search: the stored one of the search to resume, else the named file with overlays."""
    from hemotune.spaces import load_space

    if args.resume:
        from hemotune.tuning import load_resumable_space

        space, path = load_resumable_space(args.results_dir, _space_name(args.space))
        console.print(f"resuming [bold]{path}[/] with the space it was started with")
        return space
    overlays = {
        "preset": args.preset,
        "sets": args.sets,
        "data": args.data,
        "num_samples": args.num_samples,
        "max_concurrent": args.max_concurrent,
    }
    # A trial larger than this machine is refused before the dataset is looked at (a missing
    # dataset would otherwise hide it); run_search checks it again and for --address.
    from hemotune.tuning.session import refuse_unplaceable_local_trial

    need = load_space(args.space, check_data=False, **overlays).resources
    if need.gpu > 0 or need.cpu > (args.num_cpus or os.cpu_count() or 1):  # else it fits: no Ray import
        refuse_unplaceable_local_trial(need, _run_settings(args))
    return load_space(args.space, **overlays)


def _run_settings(args: argparse.Namespace) -> RunSettings:
    """Where and how the search runs, from the command line."""
    return common.run_settings(
        args,
        mlflow_experiment=args.mlflow_experiment,
        show_progress=not args.no_progress,
        show_trial_logs=args.verbose,
        resource_timeout_s=args.resource_timeout,
    )


def _print_outcome(console: Console, outcome: SearchOutcome, space: SearchSpace) -> None:
    """The ranking table, the best trial, failures and where to look in MLflow."""
    from hemotune.reports import format_value, ranking_table

    console.print(ranking_table(outcome.ranking, space))
    if outcome.best is not None:
        best = outcome.best
        params = ", ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
        console.print(
            f"[bold green]best[/]: trial {best.trial_id}, {space.objective.metric} = {best.best_value:.4f} "
            f"at epoch {best.best_epoch}: {params}"
        )
        if outcome.best_dir is not None:
            console.print(f"best weights and config: {outcome.best_dir} (best_config.yaml)")
            page = outcome.best_dir.parent / "report.html"  # the end-of-search report (docs/report.md)
            if page.is_file():
                console.print(f"report: {page} (one file, opens offline; also on the parent run)")
    else:
        console.print("[yellow]no trial reported a finite objective[/]")
    if outcome.num_failed:
        console.print(
            f"[red]{outcome.num_failed} trial(s) failed[/] (see the table and MLflow tag hemotune.error)"
        )
    ui_uri = outcome.tracking_uri
    console.print(
        f"mlflow: parent run {outcome.parent_run_id}; view with: mlflow ui --backend-store-uri {ui_uri}"
        if ui_uri.startswith("sqlite")
        else f"mlflow: parent run {outcome.parent_run_id} at {ui_uri}"
    )


#: Summaries some searches end with: file in the search folder, and what the closing line says.
END_SUMMARIES = (
    ("ablation.md", "ablation summary: {md} and {json} (also on the parent run)"),
    ("pareto.md", "pareto front: {json} (also on the parent run; children tagged hemotune.pareto=true)"),
)


def _print_summaries(console: Console, outcome: SearchOutcome, settings: RunSettings) -> None:
    """An ablation search's summary and a multi-objective search's Pareto front, when written at its end."""
    from hemotune.tuning.state import local_dir

    path = outcome.experiment_path
    folder = local_dir(path, settings.local_dir / Path(path).name)
    for name, closing in END_SUMMARIES:
        summary = folder / name
        if summary.exists():
            console.print(summary.read_text(), markup=False, highlight=False, soft_wrap=True)
            console.print(closing.format(md=summary, json=summary.with_suffix(".json")), soft_wrap=True)
