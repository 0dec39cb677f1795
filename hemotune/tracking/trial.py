"""The only module that talks to MLflow.

One parent run per search execution, one nested child run per trial
(``mlflow.parentRunId``), per-epoch metrics with ``step = epoch``.

Three pieces:

* driver side: ``SearchTracking`` opens (or re-opens on ``--resume``) the parent
  run, logs the resolved config and data report, and at the end records the best
  trial and closes it.
* trial side: ``TrialRun`` finds or creates the trial's child run (a restarted
  trial continues its own run instead of making a duplicate), buffers every
  metric, parameter and artifact, and retries: an unreachable tracking server
  never stops training, and nothing is dropped while the trial lives.
* ``reconcile``: after a search (and from ``hemotune sync``), fills in whatever a
  child run is missing from Ray Tune's own results, sets every run's final
  status, and retires child runs of trials Ray Tune no longer knows (a driver
  killed between two state saves). No run is left RUNNING.

Uses ``MlflowClient`` only (no fluent "active run" global state).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hemotune import __version__
from hemotune.offline import temporary_env

log = logging.getLogger(__name__)

T = TypeVar("T")

PARENT_TAG = "mlflow.parentRunId"
TAG_ROLE = "hemotune.role"
TAG_SEARCH = "hemotune.search"
TAG_EXPERIMENT = "hemotune.tune_experiment"
TAG_TRIAL_ID = "hemotune.trial_id"
TAG_DATASET = "hemotune.dataset_hash"
TAG_SPACE = "hemotune.space_hash"
TAG_OUTCOME = "hemotune.outcome"
_MAX_PARAM_LEN = 6000
#: First back-off of a trial's MLflow logging after a failure (seconds).
FIRST_RETRY_S = 5.0
_BAD_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-./ :]")


def metric_key(name: str) -> str:
    """A metric or param name MLflow accepts (alphanumerics, ``_ - . / space :``)."""
    return _BAD_KEY_CHARS.sub("_", name)


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numeric, finite entries of ``metrics`` as floats (bools count as 0/1)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[metric_key(key)] = float(value)
    return out


def param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LEN else text[: _MAX_PARAM_LEN - 3] + "..."


def best_key(metric: str) -> str:
    return metric_key(f"best/{metric}")


def resolve_tracking_uri(tracking_uri: str | None, local_dir: Path) -> tuple[str, str | None]:
    """``(tracking URI, artifact location for new experiments)``.

    The embedded default needs no server: a SQLite store ``mlflow.db`` and an
    artifact folder ``mlartifacts`` under the local results folder.
    """
    if tracking_uri:
        return tracking_uri, None
    local_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{local_dir / 'mlflow.db'}", (local_dir / "mlartifacts").as_uri()


def client_for(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


@contextlib.contextmanager
def fail_fast_http(max_retries: int = 0, timeout_s: int = 5) -> Iterator[None]:
    """MLflow HTTP calls made in this block give up within seconds instead of minutes.

    MLflow's client retries a refused or timed-out request 7 times with a
    doubling backoff by default (minutes). Code that must not stall on an
    unreachable server (Ray Tune's callbacks on the driver) wraps its calls in
    this and leaves the rest to reconciliation. MLflow reads these variables at
    each request.
    """
    with temporary_env(
        {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(max_retries),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
        }
    ):
        yield


def retry(fn: Callable[[], T], *, attempts: int = 3, delay_s: float = 1.0, what: str = "MLflow call") -> T:
    """Call ``fn``, retrying with a doubling delay; re-raise the last error."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, _short(exc), attempt, attempts - 1, delay_s
            )
            time.sleep(delay_s)
            delay_s *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of MLflow experiment ``name``, created if needed (restored if deleted)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return str(client.create_experiment(name, artifact_location=artifact_location))
        except Exception:
            experiment = client.get_experiment_by_name(name)  # created concurrently
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def find_child_run(client: Any, experiment_id: str, parent_run_id: str, trial_id: str) -> Any | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
        max_results=10,
    )
    return runs[0] if runs else None


def child_runs(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    return list(
        client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=10000,
        )
    )


def create_child_run(client: Any, info: TrialRunInfo, trial_id: str, trial_name: str) -> Any:
    """A trial's nested run under the search's parent run, tagged so it can be found again."""
    return client.create_run(
        info.experiment_id,
        run_name=trial_name,
        tags={
            PARENT_TAG: info.parent_run_id,
            TAG_ROLE: "trial",
            TAG_TRIAL_ID: trial_id,
            TAG_SEARCH: info.search_name,
            TAG_EXPERIMENT: info.tune_experiment,
            TAG_DATASET: info.dataset_hash,
        },
    )


def log_new_params(client: Any, run_id: str, params: Mapping[str, str], existing: Mapping[str, str]) -> None:
    """Log the params the run does not have yet (MLflow params are immutable), 100 per request."""
    from mlflow.entities import Param

    batch = [Param(k, v) for k, v in params.items() if k not in existing]
    for i in range(0, len(batch), 100):
        client.log_batch(run_id, params=batch[i : i + 100])


def logged_steps(client: Any, run_id: str, key: str = "epoch") -> set[int]:
    return {int(m.step) for m in client.get_metric_history(run_id, key)}


# ----------------------------------------------------------------------------- driver side


@dataclass
class SearchTracking:
    """The parent run of one search execution (driver side)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    @functools.cached_property
    def client(self) -> Any:
        return client_for(self.tracking_uri)

    @classmethod
    def start(
        cls,
        *,
        tracking_uri: str,
        artifact_location: str | None,
        experiment_name: str,
        run_name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
    ) -> SearchTracking:
        client = client_for(tracking_uri)
        # A new SQLite store is created on first use; another process creating it at the
        # same moment makes that fail once ("table ... already exists"): try again.
        experiment_id = retry(
            lambda: ensure_experiment(client, experiment_name, artifact_location),
            attempts=3,
            what="opening the MLflow experiment",
        )
        all_tags = {TAG_ROLE: "search", "hemotune.version": __version__, **tags}
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        tracking = cls(tracking_uri, experiment_id, run.info.run_id)
        tracking.log_params(params)
        return tracking

    @classmethod
    def reopen(cls, *, tracking_uri: str, experiment_id: str, parent_run_id: str) -> SearchTracking:
        """Continue the parent run of a resumed search (status back to RUNNING)."""
        client = client_for(tracking_uri)
        client.update_run(parent_run_id, status="RUNNING")
        client.set_tag(parent_run_id, "hemotune.resumed_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        return cls(tracking_uri, experiment_id, parent_run_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        existing = self.client.get_run(self.parent_run_id).data.params
        named = {metric_key(k): param_value(v) for k, v in params.items()}
        log_new_params(self.client, self.parent_run_id, named, existing)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.parent_run_id, text, artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.parent_run_id, key, param_value(value))

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, 0) for k, v in finite_metrics(metrics).items()]
        if batch:
            self.client.log_batch(self.parent_run_id, metrics=batch)

    def child_run_ids(self) -> dict[str, str]:
        """trial id -> child run id, for the trials of this search."""
        runs = child_runs(self.client, self.experiment_id, self.parent_run_id)
        return {r.data.tags[TAG_TRIAL_ID]: r.info.run_id for r in runs if TAG_TRIAL_ID in r.data.tags}

    def download_artifacts(self, run_id: str, dest: Path) -> list[Path]:
        """Copy a run's artifacts into ``dest``; returns the files."""
        import mlflow.artifacts

        dest.mkdir(parents=True, exist_ok=True)
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="", dst_path=str(dest), tracking_uri=self.tracking_uri
            )
        except Exception as exc:
            log.warning("could not download the artifacts of run %s: %s", run_id, _short(exc))
            return []
        return sorted(p for p in Path(local).rglob("*") if p.is_file())

    def finish(self, status: str = "FINISHED") -> None:
        """Close the parent run; child runs still RUNNING (a failed or killed search) become KILLED."""
        if status != "FINISHED":
            try:
                for run in child_runs(self.client, self.experiment_id, self.parent_run_id):
                    if run.info.status == "RUNNING":
                        self.client.set_terminated(run.info.run_id, "KILLED")
            except Exception as exc:
                log.warning("could not close the child runs: %s", _short(exc))
        retry(lambda: self.client.set_terminated(self.parent_run_id, status), what="closing the parent run")


# ----------------------------------------------------------------------------- trial side


@dataclass
class TrialRunInfo:
    """What a trial process needs to log to its search's MLflow tree (plain, picklable data)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    search_name: str
    tune_experiment: str
    dataset_hash: str


@dataclass
class TrialRun:
    """A trial's child run, with buffering and retries so tracking never stops training."""

    info: TrialRunInfo
    trial_id: str
    trial_name: str
    run_id: str | None = None
    _client: Any = None
    _steps_done: set[int] = field(default_factory=set)
    _pending_metrics: list[Any] = field(default_factory=list)
    _pending_params: dict[str, str] = field(default_factory=dict)
    _pending_artifacts: dict[str, Path] = field(default_factory=dict)
    _pending_tags: dict[str, str] = field(default_factory=dict)
    _failing_since: float | None = None
    _stash: Path | None = None
    #: After a failed flush, epochs do not try again for this long (doubling up to 120 s): a
    #: server that accepts connections but does not answer costs a whole request timeout per try.
    _retry_after_s: float = FIRST_RETRY_S
    _next_try: float = 0.0

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client_for(self.info.tracking_uri)
        return self._client

    def _ensure_run(self) -> str:
        if self.run_id is not None:
            return self.run_id
        client = self.client
        run = find_child_run(client, self.info.experiment_id, self.info.parent_run_id, self.trial_id)
        if run is None:
            run = create_child_run(client, self.info, self.trial_id, self.trial_name)
        else:
            if run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            client.set_tag(run.info.run_id, "hemotune.restarted", "true")
            self._steps_done = logged_steps(client, run.info.run_id)
        self.run_id = run.info.run_id
        return self.run_id

    # -- buffering API (never raises)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._pending_params.update({metric_key(k): param_value(v) for k, v in params.items()})
        self.flush()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._pending_tags.update({k: param_value(v) for k, v in tags.items()})
        self.flush()

    def log_epoch(self, metrics: Mapping[str, Any]) -> None:
        """Log one epoch's metrics at ``step = epoch`` (an epoch already logged is skipped)."""
        from mlflow.entities import Metric

        epoch = int(metrics.get("epoch", 0))
        if epoch not in self._steps_done:
            now = int(time.time() * 1000)
            values = finite_metrics(metrics)
            self._pending_metrics.extend(Metric(k, v, now, epoch) for k, v in values.items())
            self._steps_done.add(epoch)
        self.flush()

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending_metrics.extend(Metric(k, v, now, 0) for k, v in finite_metrics(metrics).items())
        self.flush()

    def log_artifacts(self, artifacts: Mapping[str, Path]) -> None:
        """Queue files to log under the given names; a newer file under a name replaces an older one."""
        for name, path in artifacts.items():
            self._pending_artifacts[name] = self._stash_copy(name, Path(path))
        self.flush()

    def _stash_copy(self, name: str, path: Path) -> Path:
        """Copy the file now: the trainer may overwrite or delete it before a retry succeeds."""
        if self._stash is None:
            self._stash = Path(tempfile.mkdtemp(prefix="hemotune-artifacts-"))
        target = self._stash / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return target

    def flush(self, *, force: bool = False) -> bool:
        """Send everything pending; on failure keep it for the next call. True when nothing is pending.

        While MLflow is failing, calls within the back-off window return False at once
        (unless ``force``), so training goes on at full speed.
        """
        if self._failing_since is not None and not force and time.time() < self._next_try:
            return False
        try:
            run_id = self._ensure_run()
            client = self.client
            if self._pending_params:
                log_new_params(client, run_id, self._pending_params, client.get_run(run_id).data.params)
                self._pending_params.clear()
            for key in list(self._pending_tags):
                client.set_tag(run_id, key, self._pending_tags.pop(key))
            while self._pending_metrics:
                chunk = self._pending_metrics[:1000]
                client.log_batch(run_id, metrics=chunk)
                del self._pending_metrics[: len(chunk)]
            for name in list(self._pending_artifacts):
                self._log_artifact(run_id, name, self._pending_artifacts[name])
                del self._pending_artifacts[name]
        except Exception as exc:
            if self._failing_since is None:
                self._failing_since = time.time()
                self._retry_after_s = FIRST_RETRY_S
                log.warning(
                    "MLflow logging for trial %s is failing (%s); buffering", self.trial_id, _short(exc)
                )
            else:
                self._retry_after_s = min(self._retry_after_s * 2, 120.0)
            self._next_try = time.time() + self._retry_after_s
            return False
        if self._failing_since is not None:
            log.warning("MLflow logging for trial %s recovered", self.trial_id)
            self._failing_since = None
        return True

    def _log_artifact(self, run_id: str, name: str, path: Path) -> None:
        artifact_dir, _, file_name = name.rpartition("/")
        if path.name != file_name:
            renamed = path.parent / "named" / file_name
            renamed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, renamed)
            path = renamed
        self.client.log_artifact(run_id, str(path), artifact_dir or None)

    def finish(self, status: str = "FINISHED", *, wait_s: float = 60.0) -> bool:
        """Flush (retrying up to ``wait_s``) and close the run. False if MLflow stayed unreachable."""
        deadline = time.time() + wait_s
        delay = 1.0
        while not self.flush(force=True):
            if time.time() > deadline:
                log.warning(
                    "MLflow unreachable: trial %s keeps its results in Ray Tune; run `hemotune sync`",
                    self.trial_id,
                )
                return False
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        try:
            assert self.run_id is not None
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:
            log.warning("could not close MLflow run of trial %s: %s", self.trial_id, _short(exc))
            return False
        finally:
            if self._stash is not None:
                shutil.rmtree(self._stash, ignore_errors=True)
        return True


# ----------------------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class TrialRecord:
    """A trial as Ray Tune knows it, in plain data (built by the tuning layer)."""

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


@dataclass
class ReconcileReport:
    runs_created: int = 0
    epochs_filled: int = 0
    runs_closed: dict[str, int] = field(default_factory=dict)
    orphans_retired: list[str] = field(default_factory=list)


_STATUS = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}


def best_row(history: Iterable[Mapping[str, Any]], metric: str, mode: str) -> Mapping[str, Any] | None:
    rows = [r for r in history if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not rows:
        return None
    pick = max if mode == "max" else min
    return pick(rows, key=lambda r: r[metric])


def reconcile(
    info: TrialRunInfo,
    records: Sequence[TrialRecord],
    *,
    objective: str,
    mode: str,
    search_finished: bool,
    param_view: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
) -> ReconcileReport:
    """Make the MLflow tree agree with Ray Tune's results; idempotent.

    Every trial gets exactly one child run holding its params, every epoch Tune
    recorded (missing ones are filled in at their epoch step), ``best/<objective>``
    and a final status. When ``search_finished`` is false (an interrupted search),
    runs of unfinished trials are closed as KILLED and will be re-opened on resume.
    """
    from mlflow.entities import Metric

    client = client_for(info.tracking_uri)
    report = ReconcileReport()
    known = {r.trial_id for r in records}
    for record in records:
        run = find_child_run(client, info.experiment_id, info.parent_run_id, record.trial_id)
        if run is None:
            run = create_child_run(client, info, record.trial_id, record.trial_name)
            report.runs_created += 1
        run_id = run.info.run_id
        params = {metric_key(k): param_value(v) for k, v in param_view(record.config).items()}
        log_new_params(client, run_id, params, run.data.params)
        done = logged_steps(client, run_id)
        metrics: list[Any] = []
        for row in record.history:
            epoch = row.get("epoch")
            if not isinstance(epoch, (int, float)) or int(epoch) in done:
                continue
            stamp = int(float(row.get("timestamp", time.time())) * 1000)
            metrics.extend(
                Metric(k, v, stamp, int(epoch)) for k, v in finite_metrics(epoch_metrics(row)).items()
            )
            done.add(int(epoch))
            report.epochs_filled += 1
        best = best_row(record.history, objective, mode)
        if best is not None and best_key(objective) not in run.data.metrics:
            now = int(time.time() * 1000)
            metrics.append(Metric(best_key(objective), float(best[objective]), now, 0))
            metrics.append(Metric("best_epoch", float(best.get("epoch", 0)), now, 0))
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        outcome = record.outcome
        client.set_tag(run_id, TAG_OUTCOME, outcome)
        if record.error:
            client.set_tag(run_id, "hemotune.error", param_value(record.error))
        status = _STATUS.get(record.status, "KILLED")
        current = client.get_run(run_id).info.status
        if current != status:
            client.set_terminated(run_id, status)
        report.runs_closed[status] = report.runs_closed.get(status, 0) + 1
    if search_finished:
        for run in child_runs(client, info.experiment_id, info.parent_run_id):
            trial_id = run.data.tags.get(TAG_TRIAL_ID)
            if trial_id not in known:
                client.set_tag(
                    run.info.run_id, TAG_OUTCOME, "orphaned: unknown to Ray Tune after a driver restart"
                )
                if run.info.status == "RUNNING":
                    client.set_terminated(run.info.run_id, "KILLED")
                client.delete_run(run.info.run_id)
                report.orphans_retired.append(str(trial_id))
    return report


_TUNE_BOOKKEEPING = {
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


def epoch_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _TUNE_BOOKKEEPING and not k.startswith("config/")}
