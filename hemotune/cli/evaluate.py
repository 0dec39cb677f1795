"""``hemotune evaluate``: is the best trial really better? Retrain with seeds, score a test split, compare."""

from __future__ import annotations

import argparse
from typing import Any

from hemotune.cli import common
from hemotune.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK


def add_parser(sub: Any) -> None:
    """``hemotune evaluate SEARCH [--top K] [--seeds N] [--test PATH] [--epochs E] [--baseline P] ...``."""
    evaluate = sub.add_parser(
        "evaluate",
        help="retrain a search's top configurations and its baseline with N seeds each, on a test split",
    )
    evaluate.add_argument("search", metavar="SEARCH", help="the search name (its most recent execution)")
    evaluate.add_argument("--top", type=int, default=3, help="configurations to retrain besides the baseline")
    evaluate.add_argument("--seeds", type=int, default=3, help="seeds per configuration (the same for all)")
    evaluate.add_argument(
        "--test", help="an independent test set (any supported format); default: the dataset's own test split"
    )
    evaluate.add_argument("--epochs", type=int, help="epochs per run (default: the search's budget.epochs)")
    evaluate.add_argument(
        "--baseline",
        help="the reference: N (the space's points_to_evaluate[N]; default 0, the study's recipe) or a trial id",
    )
    evaluate.add_argument(
        "--resume", action="store_true", help="continue this search's most recent evaluation"
    )
    evaluate.add_argument(
        "--results-dir", default="hemotune_results", help="where the search's experiment is"
    )
    evaluate.add_argument("--local-dir", help="local folder for evaluation.json/.md (default as for search)")
    evaluate.add_argument("--tracking-uri", help="MLflow tracking URI (default: the one the search used)")
    evaluate.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    evaluate.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation and print its statistics (also in evaluation.md on the parent run)."""
    from hemotune.tuning.evaluation import run_evaluation
    from hemotune.tuning.evaluation_plan import EvaluationRequest

    console = common.console()
    request = EvaluationRequest(
        search=args.search,
        top=args.top,
        seeds=args.seeds,
        test_path=args.test,
        epochs=args.epochs,
        baseline=args.baseline,
    )
    settings = common.run_settings(args, show_progress=False)
    outcome = run_evaluation(
        request, settings, announce=lambda message: console.print(message, soft_wrap=True)
    )
    console.print(outcome.markdown, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"written: {', '.join(str(p) for p in outcome.files)}; also on parent run {outcome.parent_run_id}"
    )
    if not outcome.document.get("finished"):
        console.print(
            f"[yellow]evaluation interrupted[/]: continue with `hemotune evaluate {args.search} --resume`"
        )
        return EXIT_INTERRUPTED
    if outcome.failed:
        console.print(f"[red]{outcome.failed} evaluation run(s) failed[/] (MLflow tag hemotune.error)")
        return EXIT_FAILURE
    return EXIT_OK
