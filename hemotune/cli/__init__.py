"""The ``hemotune`` command: thin argument parsing over the library.

Exit codes: 0 success, 2 bad input (usage, validation, missing data), 1 runtime
failure, 130 interrupted (the search is resumable with ``--resume``).
Nothing heavy (torch, ray, ultralytics, mlflow) is imported to parse arguments,
print help or validate a search space.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from hemotune._version import __version__
from hemotune.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from hemotune.errors import UsageError

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

#: Sub-command -> ``module:function`` under ``hemotune.cli``; each module also has ``add_parser``.
COMMANDS = {
    "search": "search:cmd_search",
    "spaces": "spaces:cmd_spaces",
    "trainers": "spaces:cmd_trainers",
    "sync": "sync:cmd_sync",
    "report": "report:cmd_report",
    "best": "best:cmd_best",
    "evaluate": "evaluate:cmd_evaluate",
}
#: The modules that add parsers, in the order ``hemotune --help`` lists them.
PARSERS = ("search", "spaces", "sync", "report", "best", "evaluate")


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
    for name in PARSERS:
        importlib.import_module(f"hemotune.cli.{name}").add_parser(sub)
    return parser


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs sub-command ``name`` (its module is imported only now)."""
    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(f"hemotune.cli.{module}"), function)


#: Commands that read an MLflow server (``search`` logs in through its pre-flight access check).
READS_MLFLOW = frozenset({"best", "evaluate", "report", "sync"})


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
        if args.command in READS_MLFLOW:
            from hemotune.tracking.credentials import use_credentials

            use_credentials()  # MLFLOW_TRACKING_USERNAME/PASSWORD or the HEMOTUNE_MLFLOW_CREDENTIALS file
        return _command(args.command)(args)
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
