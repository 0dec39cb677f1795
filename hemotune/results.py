"""Reading a finished (or interrupted) search: trial records, epoch histories, the ranking.

Plain Python over ``hemotune.storage``: no Ray, no MLflow. Commands that only read
results (the ranking, the best trial, reports) therefore start in well under a
second and work on any machine that can reach the results folder (local or S3).

``read_trials`` reads what Ray Tune 2.60 stores under an experiment folder, the
way ``ray.tune.ExperimentAnalysis`` does, without importing Ray:

* the newest ``experiment_state-<time>.json`` (the name sorts by time). Its
  ``trial_data`` is a list of ``[trial state, run metadata]`` pairs, each a JSON
  document. The fields read here (``trial_id``, ``status``, ``config``,
  ``relative_logdir``, ``custom_trial_name``, ``error_filename``) are plain JSON;
  only fields not read here (storage context, placement groups, stoppers) are
  cloudpickled blobs, which are never decoded (decoding them would execute code).
* each trial's ``result.json`` in its folder: one JSON object per reported epoch
  (an epoch a restored trial reported again counts once, its first report, as in MLflow).
  Nested dicts are flattened with ``/`` as ``pandas.json_normalize(sep="/")`` does
  for Ray; the ``config/...`` columns are dropped.
* each failed trial's ``error.txt`` (its traceback; the last line is kept).
* each trial's ``hemotune_epochs.jsonl``, the epochs as the trial process recorded them:
  an epoch it holds that ``result.json`` lacks (a driver killed while uploading its
  folder leaves that file cut short in storage) is added to the history, in epoch order,
  with ``training_iteration`` set to its epoch. ``ExperimentAnalysis`` does not read it.

As in Ray, a trial saved as RUNNING reads back as PENDING. A key missing from one
epoch is absent from that row (Ray's data frame holds NaN there; every consumer
treats both as "not reported"). ``tests/tuning_tests/test_tuning.py`` checks that these
records equal the ones ``ExperimentAnalysis`` gives for a real search.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hemotune import storage
from hemotune.config import ARM_KEY, SearchSpace
from hemotune.metrics import finite_metrics, is_finite_number

log = logging.getLogger(__name__)

#: Ray Tune's experiment snapshot files (``TuneController.CKPT_FILE_TMPL``) and trial result file.
EXPERIMENT_STATE_PATTERN = "experiment_state-*.json"
RESULT_FILE = "result.json"
#: hemotune's own record of a trial's epochs, written by the trial process (``tuning.durable.EpochRecord``).
EPOCH_RECORD_FILE = "hemotune_epochs.jsonl"

#: Keys Ray Tune adds to every reported result: not trainer metrics.
TUNE_BOOKKEEPING = frozenset(
    {
        "timestamp",
        "time_this_iter_s",
        "time_total_s",
        "pid",
        "hostname",
        "node_ip",
        "done",
        "training_iteration",
        "iterations_since_restore",
        "time_since_restore",
        "date",
        "checkpoint_dir_name",
        "should_checkpoint",
        "trial_id",
        "experiment_tag",
    }
)


@dataclass(frozen=True)
class TrialRecord:
    """A trial as Ray Tune knows it, in plain data."""

    trial_id: str
    trial_name: str
    status: str  # TERMINATED, ERROR, RUNNING, PENDING, PAUSED
    config: Mapping[str, Any]
    history: Sequence[Mapping[str, Any]]
    error: str | None = None
    stopped_early: bool = False

    @property
    def outcome(self) -> str:
        """completed, stopped early (by ASHA), failed or interrupted."""
        if self.status == "ERROR":
            return "failed"
        if self.status == "TERMINATED":
            return "stopped early" if self.stopped_early else "completed"
        return "interrupted"


@dataclass(frozen=True)
class RankedTrial:
    """One trial's place in the ranking: its best epoch by the objective and its sampled values."""

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


def epoch_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """One reported result without Tune's bookkeeping keys and config columns."""
    return {k: v for k, v in row.items() if k not in TUNE_BOOKKEEPING and not k.startswith("config/")}


def best_row(history: Iterable[Mapping[str, Any]], metric: str, mode: str) -> Mapping[str, Any] | None:
    """The epoch with the best finite ``metric`` (``mode`` max or min); ``None`` when none has one."""
    rows = [r for r in history if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not rows:
        return None
    pick = max if mode == "max" else min
    return pick(rows, key=lambda r: r[metric])


def last_epoch(history: Iterable[Mapping[str, Any]]) -> int:
    """The highest epoch reported (0 when none was)."""
    return max((int(r["epoch"]) for r in history if is_finite_number(r.get("epoch"))), default=0)


def rank_trials(
    records: Sequence[TrialRecord], space: SearchSpace, run_ids: Mapping[str, str]
) -> list[RankedTrial]:
    """Trials sorted by their best objective value over epochs; trials without one go last."""
    metric, mode = space.objective.metric, space.objective.mode
    sign = -1.0 if mode == "max" else 1.0
    scored = [(record, best_row(_scored(record, metric), metric, mode)) for record in records]
    scored.sort(key=lambda s: (s[1] is None, sign * s[1][metric] if s[1] is not None else 0.0, s[0].trial_id))
    return [
        _ranked(rank, record, best, metric, run_ids.get(record.trial_id))
        for rank, (record, best) in enumerate(scored, start=1)
    ]


def _scored(record: TrialRecord, metric: str) -> list[Mapping[str, Any]]:
    """The epochs of ``record`` that reported a finite ``metric`` (bools are not scores)."""
    return [r for r in record.history if is_finite_number(r.get(metric))]


def _ranked(
    rank: int, record: TrialRecord, best: Mapping[str, Any] | None, metric: str, run_id: str | None
) -> RankedTrial:
    """The ranking entry of ``record``, whose best epoch is ``best``."""
    values = [r[metric] for r in _scored(record, metric)]
    return RankedTrial(
        rank=rank,
        trial_id=record.trial_id,
        trial_name=record.trial_name,
        outcome=record.outcome,
        epochs=last_epoch(record.history),
        best_value=float(best[metric]) if best is not None else None,
        best_epoch=int(best["epoch"]) if best is not None and is_finite_number(best.get("epoch")) else None,
        last_value=float(values[-1]) if values else None,
        params=dict(record.config),
        best_metrics=_metric_view(best) if best is not None else {},
        run_id=run_id,
        error=record.error,
    )


def _metric_view(row: Mapping[str, Any]) -> dict[str, float]:
    """The trainer's metrics of one epoch (``val/...``, ``train/...``), without Tune's bookkeeping."""
    return {k: v for k, v in finite_metrics(epoch_metrics(row)).items() if "/" in k}


def read_trials(experiment_path: str, space: SearchSpace) -> list[TrialRecord]:
    """Every trial of the Tune experiment at ``experiment_path`` (a folder or ``s3://`` URI)."""
    fs, root = storage.filesystem(experiment_path)
    state = json.loads(storage.read_fs_text(fs, _newest_state_file(fs, root, experiment_path)) or "{}")
    names = {p.name for p in space.parameters} | {ARM_KEY, "seed"}  # a grid trial's arm and seed
    records = []
    for trial_json, metadata_json in state.get("trial_data", []):
        trial, metadata = json.loads(trial_json), json.loads(metadata_json)
        status = "PENDING" if trial["status"] == "RUNNING" else trial["status"]
        folder = f"{root}/{trial['relative_logdir']}" if trial.get("relative_logdir") else None
        history = _history(fs, folder) if folder else []
        records.append(
            TrialRecord(
                trial_id=trial["trial_id"],
                trial_name=_trial_name(trial),
                status=status,
                config={k: v for k, v in trial["config"].items() if k in names},
                history=history,
                error=_error(fs, folder, metadata) if status == "ERROR" else None,
                stopped_early=status == "TERMINATED" and last_epoch(history) < space.budget.epochs,
            )
        )
    return records


def _newest_state_file(fs: Any, root: str, experiment_path: str) -> str:
    """The newest ``experiment_state-<time>.json`` of the experiment (names sort by time)."""
    import pyarrow.fs as pafs

    entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    matching = fnmatch.filter([e.base_name for e in entries], EXPERIMENT_STATE_PATTERN)
    if not matching:
        raise ValueError(f"no Ray Tune experiment snapshot ({EXPERIMENT_STATE_PATTERN}) at {experiment_path}")
    return f"{root}/{max(matching)}"


def _trial_name(trial: Mapping[str, Any]) -> str:
    """What ``str(trial)`` gives in Ray: the custom name, else ``<trainable>_<trial id>``."""
    if trial.get("custom_trial_name"):
        return str(trial["custom_trial_name"])
    return f"{trial['trainable_name']}_{trial['trial_id']}".replace("/", "_")


def _history(fs: Any, folder: str) -> list[dict[str, Any]]:
    """The trial's reported results, one flat dict per epoch (empty when it reported none)."""
    rows = _repeats_dropped(_json_lines(fs, folder, RESULT_FILE))
    seen = {_step(row) for row in rows}
    missing = [
        {**row, "training_iteration": row["epoch"]}
        for row in _repeats_dropped(_json_lines(fs, folder, EPOCH_RECORD_FILE))
        if isinstance(row.get("epoch"), int) and row["epoch"] not in seen
    ]
    if missing:
        log.warning(
            "%s/%s lacks epochs %s that the trial recorded: taken from %s",
            folder,
            RESULT_FILE,
            [row["epoch"] for row in missing],
            EPOCH_RECORD_FILE,
        )
        rows = sorted([*rows, *missing], key=lambda row: _step(row) or 0)
    return [{k: v for k, v in _flatten(row).items() if not k.startswith("config/")} for row in rows]


def _json_lines(fs: Any, folder: str, name: str) -> list[dict[str, Any]]:
    """The JSON object of each line of ``folder/name`` (none when it is missing)."""
    text = storage.read_fs_text(fs, f"{folder}/{name}") or ""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:  # a line cut short by a killed trial: the epochs before it still count
            log.warning("skipping unreadable line %d of %s/%s: %s", number, folder, name, exc)
    return rows


def _repeats_dropped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch: the first report of each, as the trial's MLflow run holds it.

    Tune appends to ``result.json``: a trial restored from a checkpoint older than its
    last line (a lost node, a killed driver) reports those epochs again
    (``training_iteration`` goes back). MLflow keeps the first attempt's values (the
    restarted trial skips epochs its run already holds), so the ranking here does too.
    """
    kept: list[dict[str, Any]] = []
    last: int | None = None
    for row in rows:
        step = _step(row)
        if step is not None and last is not None and step <= last:
            continue
        kept.append(row)
        last = step if step is not None else last
    return kept


def _step(row: Mapping[str, Any]) -> int | None:
    step = row.get("training_iteration", row.get("epoch"))
    return int(step) if isinstance(step, int | float) and not isinstance(step, bool) else None


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a/b`` keys (``pandas.json_normalize(sep="/")``; an empty dict vanishes)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def _error(fs: Any, folder: str | None, metadata: Mapping[str, Any]) -> str:
    """The last line of a failed trial's ``error.txt`` (``trial failed`` when there is none)."""
    filename = metadata.get("error_filename")
    text = storage.read_fs_text(fs, f"{folder}/{filename}") if folder and filename else None
    return text.strip().splitlines()[-1] if text and text.strip() else "trial failed"
