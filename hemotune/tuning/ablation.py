"""The end of an ablation search (a grid with an ``ablation:`` section): ``ablation.json``/``.md``.

One call from ``search._finish``; a failure here is logged as a warning and never fails
the search (its trials are already recorded). Each grid trial contributes its arm,
its seed and its best epoch's metrics (by the objective, the epoch ``best/<objective>``
reports); ``hemotune.evidence.analyse_ablation`` does the statistics.

``hemotune evaluate`` on an ablation search retrains the four arms with its seeds on the
test split; ``summarize_test_ablation`` then adds the same analysis of the test metrics to
``ablation.json`` (key ``test``) and ``ablation.md`` (a section "On the test split").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hemotune.config import ARM_KEY, SearchSpace
from hemotune.evidence import SeedResult, ablation_markdown, analyse_ablation
from hemotune.results import TrialRecord, best_row
from hemotune.tracking import SearchTracking
from hemotune.tracking.evidence import record_evidence
from hemotune.tuning.evaluation_plan import metric_on_test

log = logging.getLogger(__name__)
ABLATION_FILES = ("ablation.json", "ablation.md")


def seed_results(
    records: Sequence[TrialRecord], space: SearchSpace, run_ids: Mapping[str, str]
) -> list[SeedResult]:
    """Arm, seed and best-epoch metrics of every completed grid trial."""
    metrics = space.ablation.metrics if space.ablation else (space.objective.metric,)
    results = []
    for record in records:
        best = best_row(record.history, space.objective.metric, space.objective.mode)
        if record.status != "TERMINATED" or best is None or ARM_KEY not in record.config:
            continue
        values = {m: float(best[m]) for m in metrics if isinstance(best.get(m), (int, float))}
        seed = int(record.config.get("seed", space.seed))
        results.append(
            SeedResult(str(record.config[ARM_KEY]), seed, values, None, run_ids.get(record.trial_id))
        )
    return results


def summarize_ablation(
    space: SearchSpace, records: Sequence[TrialRecord], local_dir: Path, tracking: SearchTracking
) -> list[Path]:
    """Write and log the ablation summary of a finished grid search (nothing without ``ablation:``)."""
    if space.ablation is None:
        return []
    try:
        ablation = space.ablation
        doc = analyse_ablation(
            seed_results(records, space, tracking.child_run_ids()),
            baseline=ablation.baseline,
            factors=list(ablation.factors),
            combined=ablation.combined,
            metrics=list(ablation.metrics),
            objective=space.objective.metric,
            mode=space.objective.mode,
        )
        doc["search"] = space.name
        local_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = (local_dir / name for name in ABLATION_FILES)
        json_path.write_text(json.dumps(doc, indent=2))
        md_path.write_text(ablation_markdown(doc))
        record_evidence(tracking, [json_path, md_path], {"hemotune.synergy": doc["synergy_statement"]})
        return [json_path, md_path]
    except Exception as exc:  # the search itself succeeded: its summary must not fail it
        log.warning("could not write the ablation summary of %s: %s: %s", space.name, type(exc).__name__, exc)
        return []


def summarize_test_ablation(
    space: SearchSpace,
    results: Sequence[SeedResult],
    plan: Mapping[str, Any],
    local_dir: Path,
    tracking: SearchTracking,
) -> list[Path]:
    """``ablation.json``/``.md`` with a ``test`` section: the ablation's analysis of the evaluation's runs."""
    ablation = space.ablation
    if ablation is None:
        return []
    metrics = list(dict.fromkeys(metric_on_test(m) for m in (space.objective.metric, *ablation.metrics)))
    test = analyse_ablation(
        results,
        baseline=ablation.baseline,
        factors=list(ablation.factors),
        combined=ablation.combined,
        metrics=metrics,
        objective=metric_on_test(space.objective.metric),
        mode=space.objective.mode,
    )
    test.update(experiment=plan["experiment"], test=plan.get("test_path"), epochs=plan["epochs"])
    json_path, md_path = (local_dir / name for name in ABLATION_FILES)
    doc = json.loads(json_path.read_text()) if json_path.is_file() else {"search": space.name}
    doc["test"] = test
    local_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2))
    validation = ablation_markdown(doc) if "arms" in doc else ""
    md_path.write_text(
        f"{validation}\n## On the test split ({plan['experiment']})\n\n{ablation_markdown(test)}"
    )
    record_evidence(tracking, [json_path, md_path], {"hemotune.test_synergy": test["synergy_statement"]})
    return [json_path, md_path]
