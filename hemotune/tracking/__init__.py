"""The only code that talks to MLflow.

One parent run per search execution, one nested child run per trial
(``mlflow.parentRunId``), per-epoch metrics with ``step = epoch``:

* ``parent``: the driver's parent run (``SearchTracking``, ``open_search_tracking``).
* ``trial``: a trial's own run, buffered and retried (``TrialRun``, ``TrialRunInfo``).
* ``reconcile``: MLflow made to agree with Ray Tune's results (``reconcile``,
  ``close_trial_run``).
* ``runs`` and ``client``: the run layout (tags, finding child runs) and reaching the store.
* ``credentials``: user and password for a basic-auth MLflow server, checked before a search starts.

MLflow itself is imported inside functions: importing this package is cheap.
"""

from __future__ import annotations

from hemotune.tracking.client import client_for, fail_fast_http, resolve_tracking_uri, retry
from hemotune.tracking.credentials import check_tracking_access, credentials_env, use_credentials
from hemotune.tracking.parent import SearchTracking, open_search_tracking
from hemotune.tracking.reconcile import ReconcileReport, close_trial_run, reconcile
from hemotune.tracking.runs import child_runs, find_child_run
from hemotune.tracking.trial import TrialRun, TrialRunInfo

__all__ = [
    "ReconcileReport",
    "SearchTracking",
    "TrialRun",
    "TrialRunInfo",
    "check_tracking_access",
    "child_runs",
    "client_for",
    "close_trial_run",
    "credentials_env",
    "fail_fast_http",
    "find_child_run",
    "open_search_tracking",
    "reconcile",
    "resolve_tracking_uri",
    "retry",
    "use_credentials",
]
