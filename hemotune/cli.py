"""The ``hemotune`` command: thin argument parsing over the library.

Exit codes: 0 success, 2 bad input (usage, validation, missing data), 1 runtime
failure, 130 interrupted (the search is resumable with ``--resume``).
Nothing heavy (torch, ray, ultralytics, mlflow) is imported to parse arguments,
print help or validate a search space.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotune._version import __version__
from hemotune.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from hemotune.config import RunSettings, SearchSpace
    from hemotune.tuning import SearchOutcome

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors already; keep its message short and clear."""


def build_parser() -> argparse.ArgumentParser:
    """The ``hemotune`` parser: one sub-command per action."""
    parser = _Parser(
        prog="hemotune",
        description="Distributed hyperparameter search for blood-cell deep learning "
        "(Ray Tune + Optuna + MLflow over Ultralytics YOLO and timm trainers).",
    )
    parser.add_argument("--version", action="version", version=f"hemotune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and trial logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_search_parser(sub)
    _add_spaces_parser(sub)
    sync = sub.add_parser("sync", help="re-synchronise a search's MLflow runs from Ray Tune's stored results")
    sync.add_argument("search", metavar="SEARCH", help="the search name")
    sync.add_argument("--results-dir", default="hemotune_results")
    sync.add_argument("--tracking-uri")
    sync.add_argument(
        "--force",
        action="store_true",
        help="close the runs of a search marked running even if its driver may still be alive",
    )
    trainers = sub.add_parser("trainers", help="list trainers and the parameters they accept")
    trainers.add_argument("name", nargs="?", help="show one trainer's parameters")
    return parser


def _add_search_parser(sub: Any) -> None:
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


def _add_spaces_parser(sub: Any) -> None:
    """``hemotune spaces list|show|validate``."""
    spaces = sub.add_parser("spaces", help="list, show and validate search spaces")
    spaces_sub = spaces.add_subparsers(dest="spaces_command", metavar="ACTION")
    spaces_sub.add_parser("list", help="list the search spaces that can be found")
    show = spaces_sub.add_parser("show", help="show a space: file, distributions and budget")
    show.add_argument("name", metavar="NAME_OR_FILE")
    show.add_argument("--preset", help="show it with a preset applied")
    validate = spaces_sub.add_parser("validate", help="validate a space file (and each of its presets)")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument("--data", help="also check that this dataset path exists")


def _console() -> Console:
    """The console every command prints to (rich is imported only when a command runs)."""
    from hemotune.reports import console

    return console()


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

    console = _console()
    space = _search_space(args, console)
    b = space.budget
    console.print(
        f"[bold]{space.name}[/] ({space.trainer}{', preset ' + space.preset if space.preset else ''}): "
        f"{b.num_samples} trials x {b.epochs} epochs, {b.max_concurrent} at a time, "
        f"ASHA grace {b.grace_period} / reduction {b.reduction_factor:g}; objective {space.objective.metric} "
        f"({space.objective.mode}); {space.resources.cpu:g} CPU + {space.resources.gpu:g} GPU per trial"
    )
    outcome = run_search(space, _run_settings(args), announce=lambda message: console.print(message))
    _print_outcome(console, outcome, space)
    if outcome.interrupted:
        console.print(
            f"[yellow]search interrupted[/]: continue with `{resume_command(space.name, args.results_dir)}`",
            soft_wrap=True,  # a command to copy: never broken across lines
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


def _search_space(args: argparse.Namespace, console: Console) -> SearchSpace:
    """The space to search: the stored one of the search to resume, else the named file with overlays."""
    from hemotune.spaces import load_space

    if args.resume:
        from hemotune.tuning import load_resumable_space

        space, path = load_resumable_space(args.results_dir, _space_name(args.space))
        console.print(f"resuming [bold]{path}[/] with the space it was started with")
        return space
    return load_space(
        args.space,
        preset=args.preset,
        sets=args.sets,
        data=args.data,
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
    )


def _run_settings(args: argparse.Namespace) -> RunSettings:
    """Where and how the search runs, from the command line."""
    from hemotune.config import RunSettings
    from hemotune.tuning.state import local_dir

    return RunSettings(
        results_dir=args.results_dir,
        tracking_uri=args.tracking_uri,
        address=args.address,
        resume=args.resume,
        # --local-dir, else --results-dir when it is a folder, else ./hemotune_results
        local_dir=Path(args.local_dir).expanduser().resolve()
        if args.local_dir
        else local_dir(args.results_dir, Path("hemotune_results").resolve()),
        mlflow_experiment=args.mlflow_experiment,
        show_progress=not args.no_progress,
        show_trial_logs=args.verbose,
        num_cpus=args.num_cpus,
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


def cmd_spaces(args: argparse.Namespace) -> int:
    """``hemotune spaces``: list, show or validate search spaces (no Ray, no MLflow)."""
    from hemotune import spaces

    console = _console()
    if args.spaces_command == "list":
        found = spaces.list_spaces()
        if not found:
            console.print(
                "no search spaces found (looked in: " + ", ".join(map(str, spaces.space_dirs())) + ")"
            )
        for name, path in found.items():
            raw, _ = spaces.read_space_file(path)
            text = " ".join(str(raw.get("description") or "").split()) if isinstance(raw, dict) else ""
            summary = text if len(text) <= 150 else text[:147] + "..."
            trainer = raw.get("trainer", "?") if isinstance(raw, dict) else "?"
            console.print(f"[bold]{name}[/] ({trainer}) {path}\n    {summary}")
        return EXIT_OK
    if args.spaces_command == "show":
        space = spaces.load_space(args.name, preset=args.preset, check_data=False)
        import yaml

        console.print(f"# {space.source}" + (f" (preset {space.preset})" if space.preset else ""))
        print(yaml.safe_dump(spaces.space_document(space, keep_preset=True), sort_keys=False), end="")
        return EXIT_OK
    if args.spaces_command == "validate":
        checked = spaces.validate_file(args.file, check_data=False)
        if args.data:
            spaces.load_space(args.file, data=args.data)
        console.print(f"[green]valid[/]: {args.file} ({', '.join(checked)})")
        return EXIT_OK
    raise UsageError("hemotune spaces needs an action: list, show NAME or validate FILE")


def cmd_sync(args: argparse.Namespace) -> int:
    """``hemotune sync``: make a search's MLflow runs agree with Ray Tune's stored results."""
    from hemotune.config import RunSettings
    from hemotune.tuning import sync_search

    settings = RunSettings(results_dir=args.results_dir, tracking_uri=args.tracking_uri)
    summary = sync_search(args.search, settings, force=args.force)
    console = _console()
    console.print(
        f"synchronised {summary['trials']} trials of {summary['experiment_path']}: "
        f"{summary['epochs_filled']} epochs filled in, {summary['runs_created']} runs created, "
        f"closed {summary['runs_closed']}, {len(summary['orphans_retired'])} orphaned runs retired"
    )
    if "resume" in summary:
        console.print(
            f"[yellow]interrupted[/]: its driver ({summary['driver']}) is gone; the parent run and "
            f"{summary['interrupted_runs']} runs of unfinished trials are closed as KILLED (interrupted). "
            f"Continue with `{summary['resume']}`",
            soft_wrap=True,
        )
    return EXIT_OK


def cmd_trainers(args: argparse.Namespace) -> int:
    """``hemotune trainers [NAME]``: the registered trainers and their parameters."""
    from hemotune.trainers import available_trainers, get_trainer

    console = _console()
    names = [args.name] if args.name else available_trainers()
    for name in names:
        trainer = get_trainer(name)
        console.print(f"[bold]{name}[/] ({trainer.task}): {trainer.description}")
        if args.name:
            for pname, spec in sorted(trainer.params.items()):
                extra = f" choices: {', '.join(map(str, spec.choices))}" if spec.choices else ""
                searchable = "" if spec.searchable else " (fixed only)"
                console.print(f"  {pname} ({spec.kind}){searchable}: {spec.help}{extra}")
            if trainer.dataset_options:
                console.print(f"  dataset options (formats: {', '.join(trainer.dataset_formats)}):")
                for oname, spec in sorted(trainer.dataset_options.items()):
                    extra = f" choices: {', '.join(map(str, spec.choices))}" if spec.choices else ""
                    console.print(f"    {oname} ({spec.kind}): {spec.help}{extra}")
            console.print(f"  metrics: {', '.join(trainer.metrics)}")
            if trainer.metric_prefixes:
                console.print(
                    f"  per-class metrics: {', '.join(p + '<class>' for p in trainer.metric_prefixes)}"
                )
    return EXIT_OK


COMMANDS = {"search": cmd_search, "spaces": cmd_spaces, "sync": cmd_sync, "trainers": cmd_trainers}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (errors map to codes as the module says)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # MLflow announces creating its SQLite tables at INFO
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"hemotune: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hemotune: interrupted; the search can be continued with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.verbose:
            raise
        print(f"hemotune: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
