"""Tables and exported files of a finished search: the ranking (terminal and Markdown) and best_config.yaml.

The ranking itself is computed in ``hemotune.results``; this module only presents it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hemotune.config import SearchSpace
from hemotune.results import RankedTrial

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.table import Table


def console() -> Console:
    """A rich console that does not squeeze tables into 80 columns when output is not a terminal."""
    from rich.console import Console

    out = Console(highlight=False)
    if not out.is_terminal:  # logs and CI: no 80-column wrapping
        out = Console(highlight=False, width=max(out.width, 160))
    return out


def format_value(value: Any) -> str:
    """A sampled or reported value for people: floats to 4 significant digits, the rest as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def ranking_rows(ranking: Sequence[RankedTrial], space: SearchSpace) -> tuple[list[str], list[list[str]]]:
    """The ranking as a header and rows of text (shared by the terminal table and ranking.md)."""
    names = [p.name for p in space.parameters]
    header = ["rank", "trial", "outcome", "epochs", f"best {space.objective.metric}", "at epoch", *names]
    rows = []
    for t in ranking:
        rows.append(
            [
                str(t.rank),
                t.trial_id,
                t.outcome,
                str(t.epochs),
                "-" if t.best_value is None else f"{t.best_value:.4f}",
                "-" if t.best_epoch is None else str(t.best_epoch),
                *[format_value(t.params.get(n, "")) for n in names],
            ]
        )
    return header, rows


def ranking_table(ranking: Sequence[RankedTrial], space: SearchSpace) -> Table:
    """The ranking as a rich table: the best trial in green, failed ones in red."""
    from rich.table import Table

    header, rows = ranking_rows(ranking, space)
    table = Table(title=f"{space.name}: trials ranked by {space.objective.metric} ({space.objective.mode})")
    for column in header:
        table.add_column(column, justify="right" if column in ("rank", "epochs", "at epoch") else "left")
    for row, trial in zip(rows, ranking, strict=True):
        style = (
            "bold green"
            if trial.rank == 1 and trial.best_value is not None
            else ("red" if trial.outcome == "failed" else None)
        )
        table.add_row(*row, style=style)
    return table


def ranking_markdown(ranking: Sequence[RankedTrial], space: SearchSpace) -> str:
    """The ranking as ``ranking.md``, with the failed trials' errors below the table."""
    header, rows = ranking_rows(ranking, space)
    lines = [
        f"# {space.name}: trials ranked by {space.objective.metric} ({space.objective.mode})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    failed = [t for t in ranking if t.error]
    if failed:
        lines += ["", "## Failed trials", ""] + [f"- {t.trial_id}: {t.error}" for t in failed]
    return "\n".join(lines) + "\n"


def write_best_config(
    best: RankedTrial,
    space: SearchSpace,
    resolved: Mapping[str, Any],
    dest: Path,
    artifacts: Sequence[Path],
    tracking_uri: str,
) -> Path:
    """Write ``best_config.yaml``: the best trial's sampled and resolved values and where its files are."""
    dest.mkdir(parents=True, exist_ok=True)
    weights = [str(p) for p in artifacts if p.parts and "weights" in p.parts]
    doc = {
        "search": space.name,
        "trial_id": best.trial_id,
        "objective": {
            "metric": space.objective.metric,
            "mode": space.objective.mode,
            "value": best.best_value,
            "epoch": best.best_epoch,
        },
        "sampled": dict(best.params),
        "resolved": {k: v for k, v in resolved.items() if k != "data"},
        "weights": weights,
        "mlflow": {"tracking_uri": tracking_uri, "run_id": best.run_id},
    }
    out = dest / "best_config.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return out
