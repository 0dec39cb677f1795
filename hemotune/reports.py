"""Tables and summaries of finished searches: the ranked trials and the best configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hemotune.config import SearchSpace
from hemotune.tracking import TrialRecord, best_row, epoch_metrics, finite_metrics

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table


@dataclass(frozen=True)
class RankedTrial:
    rank: int
    trial_id: str
    trial_name: str
    outcome: str
    epochs: int
    best_value: float | None
    best_epoch: int | None
    last_value: float | None
    params: Mapping[str, Any]
    best_metrics: Mapping[str, float] = field(default_factory=dict)
    run_id: str | None = None
    error: str | None = None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rank_trials(
    records: Sequence[TrialRecord], space: SearchSpace, run_ids: Mapping[str, str]
) -> list[RankedTrial]:
    """Trials sorted by their best objective value over epochs; trials without one go last."""
    metric, mode = space.objective.metric, space.objective.mode
    rows = []
    for record in records:
        scored = [r for r in record.history if _finite(r.get(metric))]
        last_epoch = max((int(r["epoch"]) for r in record.history if _finite(r.get("epoch"))), default=0)
        rows.append(
            (record, best_row(scored, metric, mode), scored[-1][metric] if scored else None, last_epoch)
        )
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(key=lambda r: (r[1] is None, sign * r[1][metric] if r[1] is not None else 0.0, r[0].trial_id))
    ranked = []
    for i, (record, best, last, epochs) in enumerate(rows, start=1):
        ranked.append(
            RankedTrial(
                rank=i,
                trial_id=record.trial_id,
                trial_name=record.trial_name,
                outcome=record.outcome,
                epochs=epochs,
                best_value=float(best[metric]) if best is not None else None,
                best_epoch=int(best["epoch"]) if best is not None and _finite(best.get("epoch")) else None,
                last_value=float(last) if last is not None else None,
                params=dict(record.config),
                best_metrics=_metric_view(best) if best is not None else {},
                run_id=run_ids.get(record.trial_id),
                error=record.error,
            )
        )
    return ranked


def _metric_view(row: Mapping[str, Any]) -> dict[str, float]:
    """The trainer's metrics of one epoch (``val/...``, ``train/...``), without Tune's bookkeeping."""
    return {k: v for k, v in finite_metrics(epoch_metrics(row)).items() if "/" in k}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def ranking_rows(ranking: Sequence[RankedTrial], space: SearchSpace) -> tuple[list[str], list[list[str]]]:
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
                *[_fmt(t.params.get(n, "")) for n in names],
            ]
        )
    return header, rows


def ranking_table(ranking: Sequence[RankedTrial], space: SearchSpace) -> Table:
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
