"""The MLflow layout of a search: tag names, finding and creating child runs, batched logging.

One parent run per search execution, one nested child run per trial
(``mlflow.parentRunId``) tagged with its Tune trial id so that a restarted trial,
reconciliation and the Tune callback all find the same run again. Per-epoch
metrics are logged at ``step = epoch``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hemotune.metrics import finite_metrics, metric_key

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.tracking.trial import TrialRunInfo

PARENT_TAG = "mlflow.parentRunId"
TAG_ROLE = "hemotune.role"
TAG_SEARCH = "hemotune.search"
TAG_EXPERIMENT = "hemotune.tune_experiment"
TAG_TRIAL_ID = "hemotune.trial_id"
TAG_DATASET = "hemotune.dataset_hash"
TAG_SPACE = "hemotune.space_hash"
TAG_OUTCOME = "hemotune.outcome"
TAG_ERROR = "hemotune.error"
#: On a KILLED parent run: the command that continues the search.
TAG_RESUME = "hemotune.resume"
#: On a parent run: the best trial (by the objective) and its child run.
TAG_BEST_TRIAL = "hemotune.best_trial_id"
TAG_BEST_RUN = "hemotune.best_run_id"
_MAX_PARAM_LEN = 6000
#: MLflow accepts at most 100 params and 1000 metrics per ``log_batch`` request.
_PARAMS_PER_BATCH = 100
_TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000


def param_value(value: Any) -> str:
    """A param or tag value as MLflow stores it: text, cut to 6000 characters."""
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LEN else text[: _MAX_PARAM_LEN - 3] + "..."


def param_view(params: Mapping[str, Any]) -> dict[str, str]:
    """``params`` under MLflow-safe names with MLflow-storable values."""
    return {metric_key(k): param_value(v) for k, v in params.items()}


def metric_rows(
    metrics: Mapping[str, Any], step: int = 0, timestamp_ms: int | None = None
) -> list[tuple[str, float, int, int]]:
    """The finite entries of ``metrics`` as ``(key, value, timestamp ms, step)``: no MLflow import needed."""
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return [(k, v, stamp, step) for k, v in finite_metrics(metrics).items()]


def metric_entities(metrics: Mapping[str, Any], step: int = 0, timestamp_ms: int | None = None) -> list[Any]:
    """The finite entries of ``metrics`` as MLflow ``Metric`` entities at ``step``."""
    from mlflow.entities import Metric

    return [Metric(*row) for row in metric_rows(metrics, step, timestamp_ms)]


def log_metric_batches(client: Any, run_id: str, metrics: Sequence[Any]) -> None:
    """Log ``Metric`` entities in as few requests as MLflow allows."""
    for i in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(metrics[i : i + METRICS_PER_BATCH]))


def log_new_params(client: Any, run_id: str, params: Mapping[str, str], existing: Mapping[str, str]) -> None:
    """Log the params the run does not have yet (MLflow params are immutable), 100 per request."""
    from mlflow.entities import Param

    batch = [Param(k, v) for k, v in params.items() if k not in existing]
    for i in range(0, len(batch), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=batch[i : i + _PARAMS_PER_BATCH])


def logged_steps(client: Any, run_id: str, key: str = "epoch") -> set[int]:
    """The steps (epochs) at which ``key`` was logged to the run."""
    return {int(m.step) for m in client.get_metric_history(run_id, key)}


def find_child_run(client: Any, experiment_id: str, parent_run_id: str, trial_id: str) -> Any | None:
    """The child run of trial ``trial_id`` under the parent run, if it has one."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
        max_results=10,
    )
    return runs[0] if runs else None


def child_runs(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every active child run of the parent run."""
    from mlflow.entities import ViewType

    return list(
        client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=10000,
        )
    )


def create_child_run(
    client: Any,
    info: TrialRunInfo,
    trial_id: str,
    trial_name: str,
    extra_tags: Mapping[str, str] | None = None,
) -> Any:
    """A trial's nested run under the search's parent run, tagged so it can be found again.

    ``extra_tags`` (a trial's placement tags, ...) are set in the same request.
    """
    return client.create_run(
        info.experiment_id,
        run_name=trial_name,
        tags={
            **(extra_tags or {}),
            PARENT_TAG: info.parent_run_id,
            TAG_ROLE: info.role,
            TAG_TRIAL_ID: trial_id,
            TAG_SEARCH: info.search_name,
            TAG_EXPERIMENT: info.tune_experiment,
            TAG_DATASET: info.dataset_hash,
        },
    )


def log_batches(
    client: Any,
    run_id: str,
    *,
    metrics: list[tuple[str, float, int, int]],
    params: dict[str, str],
    tags: dict[str, str],
) -> None:
    """Send queued metric rows, params and tags in as few ``log_batch`` requests as MLflow allows.

    Each request's entries leave their queue (the caller's list and dicts) only once it
    succeeded, so a failure part-way keeps exactly what was not sent. 1000 entities per
    request, at most 100 of them params and 100 tags.
    """
    from mlflow.entities import Metric, Param, RunTag

    while metrics or params or tags:
        param_keys = list(params)[:_PARAMS_PER_BATCH]
        tag_keys = list(tags)[:_TAGS_PER_BATCH]
        room = METRICS_PER_BATCH - len(param_keys) - len(tag_keys)
        chunk = metrics[:room]
        client.log_batch(
            run_id,
            metrics=[Metric(*row) for row in chunk],
            params=[Param(k, params[k]) for k in param_keys],
            tags=[RunTag(k, tags[k]) for k in tag_keys],
        )
        del metrics[: len(chunk)]
        for key in param_keys:
            params.pop(key)
        for key in tag_keys:
            tags.pop(key)
