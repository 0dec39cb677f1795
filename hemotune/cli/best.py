"""``hemotune best``: a finished search's best trial, from MLflow alone; exported and registered on request.

No Ray, no Tune files: the ranking is MLflow's own ``search_runs`` order (what the
UI shows when the column is sorted), on the embedded store of ``--results-dir`` or
on ``--tracking-uri``. ``--export DIR`` writes the winner's weights, ``metrics.json``
and a one-trial search space; ``--register NAME`` makes it the ``champion`` of a
registered model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotune.cli import common
from hemotune.cli.common import EXIT_FAILURE, EXIT_OK
from hemotune.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.table import Table

    from hemotune.tracking.selection import Candidate, Selection


def add_parser(sub: Any) -> None:
    """``hemotune best SEARCH``."""
    best = sub.add_parser(
        "best", help="rank a search's trials as MLflow sorts them; export or register the best one"
    )
    best.add_argument("search", metavar="SEARCH", help="the search name")
    best.add_argument(
        "--results-dir",
        default="hemotune_results",
        help="the search's --results-dir: its embedded MLflow store is used (default: ./hemotune_results)",
    )
    best.add_argument("--local-dir", help="the search's --local-dir, if it had one (results on S3)")
    best.add_argument(
        "--tracking-uri", help="MLflow tracking URI of the search (instead of the embedded store)"
    )
    best.add_argument("--run-id", help="a parent run of SEARCH (default: its latest execution)")
    best.add_argument("--metric", help="rank by this child-run metric (default: best/<objective>)")
    best.add_argument(
        "--mode", choices=("max", "min"), help="higher or lower is better (default: the objective's)"
    )
    best.add_argument("--top", type=int, default=10, metavar="K", help="show the best K trials (default: 10)")
    best.add_argument(
        "--pareto",
        action="store_true",
        help="list the Pareto front of a multi-objective search (its parent run's pareto.json)",
    )
    best.add_argument(
        "--export", metavar="DIR", help="write the best trial's weights, metrics.json and a one-trial space"
    )
    best.add_argument(
        "--register", metavar="NAME", help="register the best weights as model NAME with alias champion"
    )


def cmd_best(args: argparse.Namespace) -> int:
    """``hemotune best``: rank, tag the parent with the winner, then export and register it if asked."""
    from hemotune.offline import apply_offline_env
    from hemotune.tracking import client_for
    from hemotune.tracking.selection import find_search_run, rank_children, sqlite_store_problem, tag_best

    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    apply_offline_env()  # no telemetry, no progress bars
    uri = _tracking_uri(args)
    problem = sqlite_store_problem(uri)
    if problem:
        raise UsageError(
            f"no search named {args.search!r}: {problem} (pass the search's --results-dir, or --tracking-uri)"
        )
    client = client_for(uri)
    parent = find_search_run(client, args.search, args.run_id, uri)
    if args.pareto:
        return _print_pareto(client, parent)
    selection = rank_children(client, uri, parent, args.metric, args.mode)
    console = common.console()
    console.print(selection_table(selection, args.top))
    best = selection.best
    if best is None:
        console.print(f"[yellow]no trial of {parent.search} has a finite {selection.metric}[/]")
        return EXIT_FAILURE if (args.export or args.register) else EXIT_OK
    tag_best(client, selection)
    console.print(
        f"[bold green]best[/]: trial {best.trial_id} (run {best.run_id}), {selection.metric} = {best.value:.4f}; "
        f"parent run {parent.run_id} tagged",
        soft_wrap=True,
    )
    if args.export:
        written = export_best(selection, best, Path(args.export))
        console.print(f"exported to {args.export}: " + ", ".join(written), soft_wrap=True)
    if args.register:
        _register(console, client, selection, best, args.register)
    return EXIT_OK


def _print_pareto(client: Any, parent: Any) -> int:
    """``--pareto``: the front the search recorded on its parent run (``pareto.json``), as a table."""
    from rich.table import Table

    from hemotune.tracking.pareto import read_pareto

    doc = read_pareto(client, parent.run_id)
    if doc is None:
        raise UsageError(
            f"parent run {parent.run_id} of {parent.search} has no pareto.json: "
            "--pareto needs a multi-objective search (objectives: in its space file)"
        )
    metrics = [o["metric"] for o in doc["objectives"]]
    table = Table(
        title=f"{parent.search} (parent run {parent.run_id}): Pareto front, "
        f"{len(doc['front'])} of {doc['trials_considered']} trials"
    )
    names = sorted({n for c in doc["front"] for n in c.get("params", {})})
    for column in (
        "trial",
        "run",
        "epoch",
        *(f"{o['metric']} ({o['mode']})" for o in doc["objectives"]),
        *names,
    ):
        table.add_column(column)
    for c in doc["front"]:
        table.add_row(
            str(c["trial_id"]),
            str(c.get("run_id") or "-"),
            str(c.get("epoch", "-")),
            *[f"{float(c['values'][m]):.4f}" for m in metrics],
            *[_format(c.get("params", {}).get(n, "")) for n in names],
        )
    table.caption = doc.get("rule")
    common.console().print(table)
    return EXIT_OK


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _tracking_uri(args: argparse.Namespace) -> str:
    """``--tracking-uri``, else the embedded store ``hemotune search`` made for this ``--results-dir``."""
    from hemotune.tuning.state import local_dir

    if args.tracking_uri:
        return str(args.tracking_uri)
    folder = (
        Path(args.local_dir).expanduser().resolve()
        if args.local_dir
        else local_dir(args.results_dir, Path("hemotune_results").resolve())
    )
    return f"sqlite:///{folder / 'mlflow.db'}"


def selection_table(selection: Selection, top: int) -> Table:
    """The best ``top`` trials: rank, trial, run, status, the ranking metric, best epoch, searched values."""
    from rich.table import Table

    from hemotune.reports import format_value

    names = list(selection.parent.param_names)
    table = Table(
        title=f"{selection.parent.search} (parent run {selection.parent.run_id}): "
        f"trials ranked by {selection.metric} ({selection.mode})"
    )
    for column in ("rank", "trial", "run", "status", selection.metric, "best epoch", *names):
        table.add_column(column, justify="right" if column in ("rank", "best epoch") else "left")
    for candidate in selection.candidates[:top]:
        epoch = candidate.best_epoch
        table.add_row(
            str(candidate.rank),
            candidate.trial_id,
            candidate.run_id,
            candidate.outcome or candidate.status.lower(),
            "-" if candidate.value is None else f"{candidate.value:.4f}",
            "-" if epoch is None else str(epoch),
            *[format_value(_typed(candidate.params.get(n, ""))) for n in names],
            style="bold green" if candidate is selection.best else None,
        )
    hidden = len(selection.candidates) - top
    if hidden > 0:
        table.caption = f"{hidden} more trial(s) not shown (--top)"
    return table


def _typed(text: str) -> Any:
    """A param's text as a number where it is one (so floats print to 4 significant digits)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def export_best(selection: Selection, best: Candidate, dest: Path) -> list[str]:
    """Write the best run's artifacts (``weights/`` ...), ``metrics.json`` and ``<search>_best.yaml``."""
    import tempfile

    from hemotune.tracking.selection import download_run_artifacts, stored_space

    dest = dest.expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    files = download_run_artifacts(selection.tracking_uri, best.run_id, dest)
    metrics = dest / "metrics.json"
    metrics.write_text(json.dumps(_metrics_document(selection, best), indent=2, sort_keys=False) + "\n")
    with tempfile.TemporaryDirectory(prefix="hemotune-space-") as scratch:
        document = stored_space(selection.tracking_uri, selection.parent, Path(scratch))
    space_file = _write_space(document, selection, best, dest)
    return [str(p.relative_to(dest)) for p in files] + [metrics.name, space_file.name]


def _metrics_document(selection: Selection, best: Candidate) -> dict[str, Any]:
    """``metrics.json``: which trial, ranked how, and the child run's metrics and params."""
    return {
        "search": selection.parent.search,
        "trial_id": best.trial_id,
        "run_id": best.run_id,
        "parent_run_id": selection.parent.run_id,
        "tracking_uri": selection.tracking_uri,
        "ranked_by": {"metric": selection.metric, "mode": selection.mode, "value": best.value},
        "objective": {"metric": selection.parent.objective, "mode": selection.parent.mode},
        "metrics": dict(best.metrics),
        "params": dict(best.params),
    }


def _write_space(document: dict[str, Any], selection: Selection, best: Candidate, dest: Path) -> Path:
    """The one-trial space of ``best``, validated as ``hemotune search`` will validate it."""
    import yaml

    from hemotune.spaces import validate_space
    from hemotune.spaces.fixed import logged_value, single_trial_document

    specs = document.get("parameters") or {}
    values = {
        name: logged_value(spec, best.params[name]) for name, spec in specs.items() if name in best.params
    }
    # A conditional parameter (``when:``) inactive in this trial was neither sampled nor logged:
    # it stays out of ``fixed`` too, so the trainer's default applies again.
    missing = sorted(n for n in set(specs) - set(values) if not (specs[n] or {}).get("when"))
    if missing:
        raise RuntimeError(f"run {best.run_id} has no params {', '.join(missing)}: cannot fix its values")
    seed = best.params.get("seed")
    name = f"{selection.parent.search}_best"
    doc = single_trial_document(
        document,
        values,
        name=name,
        seed=int(seed) if seed is not None else None,
        description=f"Trial {best.trial_id} of search {selection.parent.search} "
        f"(parent run {selection.parent.run_id}, {selection.metric} = {best.value}), every value fixed.",
    )
    path = dest / f"{name}.yaml"
    validate_space(doc, str(path), check_data=False)  # what `hemotune search` accepts, or fail here
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return path


def _register(console: Console, client: Any, selection: Selection, best: Candidate, name: str) -> None:
    """Register ``best`` as ``name`` and say where the champion alias moved from."""
    from hemotune._version import __version__
    from hemotune.tracking.registry import CHAMPION, register_candidate
    from hemotune.tracking.selection import lineage_tags

    registration = register_candidate(
        client,
        selection.tracking_uri,
        name,
        best,
        experiment_id=selection.parent.experiment_id,
        lineage=lineage_tags(selection, best, __version__),
    )
    moved = (
        "already there"
        if registration.previous_champion == registration.version
        else f"moved from version {registration.previous_champion}"
        if registration.previous_champion
        else "new"
    )
    console.print(
        f"registered: models:/{name}/{registration.version} "
        f"({'existing version of this run' if registration.reused else 'new version'}), "
        f"alias {CHAMPION} -> version {registration.version} ({moved}); source {registration.source}",
        soft_wrap=True,
    )
