"""A trial's MLflow logging against a server that accepts connections but never answers.

That is what a half-dead or restarting tracking server (or a lost route to the head)
looks like to a client: each request waits for its whole timeout. ``TrialRun``
must not pay that on every epoch: after a failure it backs off.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from hemotune.tracking import TrialRun, TrialRunInfo


@pytest.fixture
def hung_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)  # connections are accepted by the kernel, never answered
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_a_hung_server_costs_one_timeout_per_backoff_window_not_per_epoch(hung_server: str) -> None:
    run = TrialRun(
        TrialRunInfo(hung_server, "0", "parent", "s", "s-1", "abc"), trial_id="t1", trial_name="trial_t1"
    )
    began = time.time()
    for epoch in range(1, 11):  # ten fast epochs inside the first back-off window
        run.log_epoch({"epoch": epoch, "val/score": epoch / 10})
    elapsed = time.time() - began
    assert 0.9 < elapsed < 3.0, f"{elapsed:.1f}s: one timed-out request expected, not one per epoch"
    assert len(run._pending_metrics) == 20  # every epoch kept for later
    began = time.time()
    assert run.finish(wait_s=0) is False  # finishing always tries (once more), then gives up
    assert 0.9 < time.time() - began < 3.0
