"""The end of a multi-objective search (``objectives:``): its Pareto front, ``pareto.json`` and ``pareto.md``.

One call from ``search._finish``; a failure here is logged as a warning and never fails
the search. Each completed trial contributes the values of its final reported epoch
(what Ray's OptunaSearch told the Optuna study; ``hemotune.evidence.pareto``), so the
front is the journal study's ``best_trials``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hemotune.config import ARM_KEY, SearchSpace
from hemotune.evidence.pareto import pareto_document, pareto_markdown
from hemotune.results import TrialRecord, last_epoch
from hemotune.tracking import SearchTracking
from hemotune.tracking.pareto import PARETO_FILE, record_pareto

log = logging.getLogger(__name__)
PARETO_MARKDOWN = "pareto.md"


def candidates(
    records: Sequence[TrialRecord], space: SearchSpace, run_ids: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every completed trial's final reported epoch: its objectives' values, run and searched values."""
    metrics = [o.metric for o in space.objectives]
    names = [p.name for p in space.parameters]
    out = []
    for record in records:
        if record.status != "TERMINATED" or not record.history:
            continue
        epoch = last_epoch(record.history)
        final = [row for row in record.history if row.get("epoch") == epoch][-1:] or [record.history[-1]]
        out.append(
            {
                "trial_id": record.trial_id,
                "run_id": run_ids.get(record.trial_id),
                "epoch": epoch,
                "values": {m: final[0].get(m) for m in metrics},
                "params": {n: record.config[n] for n in (*names, ARM_KEY) if n in record.config},
            }
        )
    return out


def summarize_pareto(
    space: SearchSpace, records: Sequence[TrialRecord], local_dir: Path, tracking: SearchTracking
) -> dict[str, Any] | None:
    """Write and log the Pareto front of a multi-objective search (nothing for one objective)."""
    if not space.objectives:
        return None
    try:
        objectives = [{"metric": o.metric, "mode": o.mode} for o in space.objectives]
        doc = pareto_document(space.name, objectives, candidates(records, space, tracking.child_run_ids()))
        doc["parent_run_id"] = tracking.parent_run_id
        local_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = local_dir / PARETO_FILE, local_dir / PARETO_MARKDOWN
        json_path.write_text(json.dumps(doc, indent=2) + "\n")
        md_path.write_text(pareto_markdown(doc))
        record_pareto(tracking, doc, [json_path, md_path])
        return doc
    except Exception as exc:  # the search itself succeeded: its summary must not fail it
        log.warning("could not write the Pareto front of %s: %s: %s", space.name, type(exc).__name__, exc)
        return None
