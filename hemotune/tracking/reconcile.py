"""Making MLflow agree with Ray Tune: after a search, from ``hemotune sync``, and as trials end.

Ray Tune's stored results are the record of a search; MLflow is a view of them
that a lost connection, a killed trial or a killed driver can leave incomplete.
``reconcile`` fills in whatever a child run is missing from Tune's results, sets
every run's final status, and retires child runs of trials Tune no longer knows
(a driver killed between two state saves). No run is left RUNNING.
``close_trial_run`` is the prompt part of that, for Ray Tune's callback.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hemotune.metrics import best_key
from hemotune.results import TrialRecord, best_row, epoch_metrics
from hemotune.tracking.client import client_for, fail_fast_http
from hemotune.tracking.runs import (
    TAG_ERROR,
    TAG_EXPERIMENT,
    TAG_OUTCOME,
    TAG_TRIAL_ID,
    child_runs,
    create_child_run,
    find_child_run,
    log_metric_batches,
    log_new_params,
    logged_steps,
    metric_entities,
    param_value,
    param_view,
)
from hemotune.tracking.trial import TrialRunInfo

#: Tune's final trial status -> the MLflow run status; anything else (an interrupted trial) is KILLED.
_STATUS = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}


@dataclass
class ReconcileReport:
    """What one reconciliation changed (``hemotune sync`` prints it)."""

    runs_created: int = 0
    epochs_filled: int = 0
    runs_closed: dict[str, int] = field(default_factory=dict)
    orphans_retired: list[str] = field(default_factory=list)


def reconcile(
    info: TrialRunInfo,
    records: Sequence[TrialRecord],
    *,
    objective: str,
    mode: str,
    search_finished: bool,
    resolved: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReconcileReport:
    """Make the MLflow tree agree with Ray Tune's results; idempotent.

    Every trial gets exactly one child run holding its params (``resolved[trial_id]``,
    the values the trial ran with, else its sampled config), every epoch Tune
    recorded (missing ones are filled in at their epoch step), ``best/<objective>``
    and a final status. When ``search_finished`` is false (an interrupted search),
    runs of unfinished trials are closed as KILLED and will be re-opened on resume.
    """
    client = client_for(info.tracking_uri)
    report = ReconcileReport()
    for record in records:
        run = find_child_run(client, info.experiment_id, info.parent_run_id, record.trial_id)
        if run is None:
            run = create_child_run(client, info, record.trial_id, record.trial_name)
            report.runs_created += 1
        params = (resolved or {}).get(record.trial_id, record.config)
        log_new_params(client, run.info.run_id, param_view(params), run.data.params)
        _fill_metrics(client, run, record, objective, mode, report)
        _close(client, run.info.run_id, record, report)
    if search_finished:
        known = {r.trial_id for r in records}
        report.orphans_retired += _retire_orphans(client, info, known)
    return report


def _fill_metrics(
    client: Any, run: Any, record: TrialRecord, objective: str, mode: str, report: ReconcileReport
) -> None:
    """Log the epochs the run is missing (at their own time stamps) and its best value if absent."""
    run_id = run.info.run_id
    done = logged_steps(client, run_id)
    metrics: list[Any] = []
    for row in record.history:
        epoch = row.get("epoch")
        if not isinstance(epoch, (int, float)) or int(epoch) in done:
            continue
        stamp = int(float(row.get("timestamp", time.time())) * 1000)
        metrics += metric_entities(epoch_metrics(row), step=int(epoch), timestamp_ms=stamp)
        done.add(int(epoch))
        report.epochs_filled += 1
    best = best_row(record.history, objective, mode)
    if best is not None and best_key(objective) not in run.data.metrics:
        now = int(time.time() * 1000)
        metrics += metric_entities({best_key(objective): float(best[objective])}, timestamp_ms=now)
        metrics += metric_entities({"best_epoch": float(best.get("epoch", 0))}, timestamp_ms=now)
    log_metric_batches(client, run_id, metrics)


def _close(client: Any, run_id: str, record: TrialRecord, report: ReconcileReport) -> None:
    """Tag the run with the trial's outcome (and error) and give it its final status."""
    client.set_tag(run_id, TAG_OUTCOME, record.outcome)
    if record.error:
        client.set_tag(run_id, TAG_ERROR, param_value(record.error))
    status = _STATUS.get(record.status, "KILLED")
    if client.get_run(run_id).info.status != status:
        client.set_terminated(run_id, status)
    report.runs_closed[status] = report.runs_closed.get(status, 0) + 1


def _retire_orphans(client: Any, info: TrialRunInfo, known: set[str]) -> list[str]:
    """Delete the child runs of trials Ray Tune does not know (closed and tagged first).

    Only runs of this Tune experiment: the parent also holds the runs of ``hemotune evaluate``'s
    own experiments, which a search's reconciliation must leave alone (and the other way round).
    """
    retired = []
    for run in child_runs(client, info.experiment_id, info.parent_run_id):
        trial_id = run.data.tags.get(TAG_TRIAL_ID)
        if (
            trial_id in known
            or run.data.tags.get(TAG_EXPERIMENT, info.tune_experiment) != info.tune_experiment
        ):
            continue
        client.set_tag(run.info.run_id, TAG_OUTCOME, "orphaned: unknown to Ray Tune after a driver restart")
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
        client.delete_run(run.info.run_id)
        retired.append(str(trial_id))
    return retired


@fail_fast_http()  # called from Tune's event loop: an unreachable server must not stall the search
def close_trial_run(
    tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str, *, status: str, outcome: str
) -> None:
    """Tag and close a trial's run as soon as Tune ends the trial; errors are left to ``reconcile``."""
    try:
        client = client_for(tracking_uri)
        run = find_child_run(client, experiment_id, parent_run_id, trial_id)
        if run is None:
            return
        client.set_tag(run.info.run_id, TAG_OUTCOME, outcome)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status)
    except Exception:  # reconciliation at the end of the search retries this
        return
