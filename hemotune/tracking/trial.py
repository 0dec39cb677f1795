"""The trial side of tracking: a trial's child run that never stops training.

``TrialRun`` finds or creates the trial's child run (a restarted trial continues
its own run instead of making a duplicate), buffers every metric, parameter,
tag and artifact, and retries with a back-off: an unreachable tracking server
never stops training, and nothing is dropped while the trial lives. What is
still missing when the trial ends is filled in by ``reconcile`` from Ray Tune's
own results.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemotune.tracking.client import client_for, short_error
from hemotune.tracking.runs import (
    create_child_run,
    find_child_run,
    log_batches,
    logged_steps,
    metric_rows,
    param_value,
    param_view,
)

log = logging.getLogger(__name__)

#: First back-off of a trial's MLflow logging after a failure (seconds).
FIRST_RETRY_S = 5.0


@dataclass
class TrialRunInfo:
    """What a trial process needs to log to its search's MLflow tree (plain, picklable data)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    search_name: str
    tune_experiment: str
    dataset_hash: str
    #: ``hemotune.role`` of the child runs: ``trial`` (a search's), ``evaluation`` (``hemotune evaluate``'s).
    role: str = "trial"


@dataclass
class TrialRun:
    """A trial's child run, with buffering and retries so tracking never stops training."""

    info: TrialRunInfo
    trial_id: str
    trial_name: str
    run_id: str | None = None
    _client: Any = None
    _steps_done: set[int] = field(default_factory=set)
    #: ``(key, value, timestamp ms, step)`` rows, made into MLflow entities only when sent.
    _pending_metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    #: Params the run already holds (MLflow params are immutable: these are not sent again).
    _params_logged: dict[str, str] = field(default_factory=dict)
    _pending_params: dict[str, str] = field(default_factory=dict)
    _pending_artifacts: dict[str, Path] = field(default_factory=dict)
    _pending_tags: dict[str, str] = field(default_factory=dict)
    _failing_since: float | None = None
    #: Where copies of artifacts wait until they are logged (default: a new folder in the temp dir).
    stash_dir: Path | None = None
    _stash: Path | None = None
    #: After a failed flush, epochs do not try again for this long (doubling up to 120 s): a
    #: server that accepts connections but does not answer costs a whole request timeout per try.
    _retry_after_s: float = FIRST_RETRY_S
    _next_try: float = 0.0
    #: Held by every public call: the background flush and the trial's own calls never interleave.
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _held: int = 0
    _background: threading.Thread | None = None
    #: Calls made while another thread holds the lock (the start-up send, importing MLflow): their
    #: change to the queues, applied in call order by the next holder. The caller does not wait.
    _inbox: deque[Callable[[], None]] = field(default_factory=deque)
    #: Stashed artifact copies so far: each copy gets its own folder, never one being uploaded.
    _copies: int = 0

    @property
    def client(self) -> Any:
        """The MLflow client, made on first use (a ``TrialRun`` is built before MLflow is needed)."""
        if self._client is None:
            self._client = client_for(self.info.tracking_uri)
        return self._client

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Calls inside only queue (no request): what they queue is sent together afterwards."""
        with self._lock:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1

    def flush_in_background(self) -> None:
        """Send what is queued from a thread, while the trial starts training.

        In a new trial process the first send imports MLflow and opens its store (about
        2.3 s and, for SQLite, 1 s more on one core; 10 s when 8 trial processes start at once
        on 2 cores, benchmarks/scheduling/timeline.py) before it creates the child run: done
        here, that start-up overlaps the first epochs instead of delaying them. A call made
        meanwhile does not wait: it leaves its change in the inbox, which this thread (or the
        next call, or ``finish``) applies in call order, so what reaches MLflow is still in the
        order of the calls. The trial's reporter waits for this send at each report
        (``wait_for_background``).
        """
        self._background = threading.Thread(
            target=self._background_flush, name=f"mlflow-{self.trial_id}", daemon=True
        )
        self._background.start()

    def wait_for_background(self) -> None:
        """Wait until the start-up send (``flush_in_background``) and what was left meanwhile went out.

        The trial's reporter calls this at every report, the first included: the first epoch
        trains while MLflow starts, and every epoch is in MLflow before Tune hears of it, so a
        trial that Tune stops (ASHA, the last epoch) or whose process dies has logged what it
        reported. (A reporter that skipped it at the first report lost the best weights of
        trials that Tune ended after one epoch.)
        """
        if self._background is not None:
            self._background.join()
            self._background = None

    def _background_flush(self) -> None:
        self.flush()
        while self._inbox:  # calls made while it sent
            self.flush()

    def _queue(self, change: Callable[[], None]) -> None:
        """Apply ``change`` to the queues and send; while another thread sends, leave it in the inbox."""
        if not self._lock.acquire(blocking=False):
            self._inbox.append(change)
            return
        try:
            self._drain_inbox()
            change()
            self._flush(force=False)
        finally:
            self._lock.release()

    def _drain_inbox(self) -> None:
        """Apply the changes other threads left while this one held the lock (caller holds it)."""
        while self._inbox:
            self._inbox.popleft()()

    def _ensure_run(self) -> str:
        """The trial's run id: its existing child run (a restarted trial), else a new one."""
        if self.run_id is not None:
            return self.run_id
        client = self.client
        run = find_child_run(client, self.info.experiment_id, self.info.parent_run_id, self.trial_id)
        if run is None:  # the queued tags go with the new run, in the same request
            tags = dict(self._pending_tags)
            run = create_child_run(client, self.info, self.trial_id, self.trial_name, extra_tags=tags)
            for key, value in tags.items():
                if self._pending_tags.get(key) == value:
                    del self._pending_tags[key]
        else:
            if run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            self._pending_tags.setdefault("hemotune.restarted", "true")
            self._params_logged = dict(run.data.params)
            logged = logged_steps(client, run.info.run_id)  # by the trial's earlier process
            self._pending_metrics = [m for m in self._pending_metrics if m[3] == 0 or m[3] not in logged]
            self._steps_done |= logged
        self.run_id = run.info.run_id
        return self.run_id

    # -- buffering API (never raises, never waits for another thread's send)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Queue params (MLflow-safe names); a param the run already has is not logged again."""
        view = param_view(params)
        self._queue(lambda: self._pending_params.update(view))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Queue tags; a later value of a tag replaces an earlier one."""
        view = {k: param_value(v) for k, v in tags.items()}
        self._queue(lambda: self._pending_tags.update(view))

    def log_epoch(self, metrics: Mapping[str, Any]) -> None:
        """Log one epoch's metrics at ``step = epoch`` (an epoch already logged is skipped)."""
        epoch = int(metrics.get("epoch", 0))
        rows = metric_rows(metrics, step=epoch)  # stamped now, whenever they are sent

        def change() -> None:
            if epoch not in self._steps_done:
                self._pending_metrics.extend(rows)
                self._steps_done.add(epoch)

        self._queue(change)

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        """Log the trainer's summary metrics (``best/<objective>``, ...) at step 0."""
        rows = metric_rows(metrics)
        self._queue(lambda: self._pending_metrics.extend(rows))

    def log_artifacts(self, artifacts: Mapping[str, Path]) -> None:
        """Queue files to log under the given names; a newer file under a name replaces an older one."""
        copies = {name: self._stash_copy(name, Path(path)) for name, path in artifacts.items()}

        def change() -> None:
            for name, copy in copies.items():
                older = self._pending_artifacts.get(name)
                if older is not None:  # replaced before it was sent (every copy has its own file)
                    older.unlink(missing_ok=True)
                self._pending_artifacts[name] = copy

        self._queue(change)

    def _stash_copy(self, name: str, path: Path) -> Path:
        """Copy the file now: the trainer may overwrite or delete it before a retry succeeds.

        The copies live in ``stash_dir`` (the trial's own folder) when given, so a trial that never
        reaches ``finish`` (stopped by ASHA, killed) leaves nothing behind in the system temp folder;
        each copy is deleted as soon as it is logged.
        """
        if self._stash is None:
            if self.stash_dir is not None:
                self.stash_dir.mkdir(parents=True, exist_ok=True)
                self._stash = Path(tempfile.mkdtemp(prefix="mlflow-pending-", dir=self.stash_dir))
            else:
                self._stash = Path(tempfile.mkdtemp(prefix="hemotune-artifacts-"))
        self._copies += 1  # its own folder: an older copy under the name may be uploading right now
        target = self._stash / str(self._copies) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return target

    def flush(self, *, force: bool = False) -> bool:
        """Send everything pending; on failure keep it for the next call. True when nothing is pending.

        While MLflow is failing, calls within the back-off window return False at once
        (unless ``force``), so training goes on at full speed. Inside ``held`` it only queues.
        """
        with self._lock:
            return self._flush(force=force)

    def _anything_pending(self) -> bool:
        return bool(
            self._pending_metrics or self._pending_params or self._pending_tags or self._pending_artifacts
        )

    def _flush(self, *, force: bool) -> bool:
        self._drain_inbox()
        if self._held and not force:
            return not self._anything_pending()
        if self._failing_since is not None and not force and time.time() < self._next_try:
            return False
        try:
            self._send_pending()
        except Exception as exc:
            self._back_off(exc)
            return False
        if self._failing_since is not None:
            log.warning("MLflow logging for trial %s recovered", self.trial_id)
            self._failing_since = None
        return True

    def _send_pending(self) -> None:
        """Send what is queued; whatever was sent leaves the queue even if a later request fails."""
        run_id = self._ensure_run()
        for key in [k for k in self._pending_params if k in self._params_logged]:
            del self._pending_params[key]  # immutable in MLflow: the run keeps its first value
        sending = dict(self._pending_params)
        try:
            log_batches(
                self.client,
                run_id,
                metrics=self._pending_metrics,
                params=self._pending_params,
                tags=self._pending_tags,
            )
        finally:  # what left the queue is on the run now
            self._params_logged.update({k: v for k, v in sending.items() if k not in self._pending_params})
        for name in list(self._pending_artifacts):
            self._log_artifact(run_id, name, self._pending_artifacts[name])
            self._pending_artifacts.pop(name).unlink(missing_ok=True)

    def _back_off(self, exc: Exception) -> None:
        """Warn once when logging starts failing; wait twice as long before each further try."""
        if self._failing_since is None:
            self._failing_since = time.time()
            self._retry_after_s = FIRST_RETRY_S
            log.warning(
                "MLflow logging for trial %s is failing (%s); buffering", self.trial_id, short_error(exc)
            )
        else:
            self._retry_after_s = min(self._retry_after_s * 2, 120.0)
        self._next_try = time.time() + self._retry_after_s

    def _log_artifact(self, run_id: str, name: str, path: Path) -> None:
        """Log ``path`` as artifact ``name`` (``dir/file``), renaming a copy when the names differ."""
        artifact_dir, _, file_name = name.rpartition("/")
        if path.name != file_name:
            renamed = path.parent / "named" / file_name
            renamed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, renamed)
            path = renamed
        self.client.log_artifact(run_id, str(path), artifact_dir or None)

    def finish(self, status: str = "FINISHED", *, wait_s: float = 60.0) -> bool:
        """Flush (retrying up to ``wait_s``) and close the run. False if MLflow stayed unreachable."""
        with self._lock:
            return self._finish(status, wait_s)

    def _finish(self, status: str, wait_s: float) -> bool:
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
            log.warning("could not close MLflow run of trial %s: %s", self.trial_id, short_error(exc))
            return False
        finally:
            if self._stash is not None:
                shutil.rmtree(self._stash, ignore_errors=True)
        return True
