"""Reaching an MLflow tracking store: the client, the default store, retries and fast failure.

Uses ``MlflowClient`` only (no fluent "active run" global state); MLflow is
imported inside functions so that importing this package stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hemotune.offline import temporary_env

log = logging.getLogger(__name__)

T = TypeVar("T")


def resolve_tracking_uri(tracking_uri: str | None, local_dir: Path) -> tuple[str, str | None]:
    """``(tracking URI, artifact location for new experiments)``.

    The embedded default needs no server: a SQLite store ``mlflow.db`` and an
    artifact folder ``mlartifacts`` under the local results folder.
    """
    if tracking_uri:
        return tracking_uri, None
    from hemotune.config import default_cache_dir
    from hemotune.tracking.store_template import seed_sqlite_store

    local_dir.mkdir(parents=True, exist_ok=True)
    seed_sqlite_store(local_dir / "mlflow.db", default_cache_dir())  # a copy, not 3.5 s of table creation
    return f"sqlite:///{local_dir / 'mlflow.db'}", (local_dir / "mlartifacts").as_uri()


def client_for(tracking_uri: str) -> Any:
    """An ``MlflowClient`` for ``tracking_uri`` (imports MLflow)."""
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
                "%s failed (%s); retry %d/%d in %.1fs",
                what,
                short_error(exc),
                attempt,
                attempts - 1,
                delay_s,
            )
            time.sleep(delay_s)
            delay_s *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def short_error(exc: BaseException) -> str:
    """The first line of an error, at most 200 characters (for one-line warnings)."""
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
