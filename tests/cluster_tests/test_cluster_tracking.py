"""A trial's MLflow logging against a server that accepts connections but never answers.

That is what a half-dead or restarting tracking server (or a lost route to the head)
looks like to a client: each request waits for its whole timeout. ``TrialRun``
must not pay that on every epoch: after a failure it backs off.

Two measures of "one request, not one per epoch": the connections the hung server
accepted (a count, immune to machine load), and the time the epochs took, measured
from a warm start: MLflow's client and HTTP stack are imported and used once
before the clock starts (a cold ``import mlflow`` alone takes about 2.4 s).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from hemotune.tracking import TrialRun, TrialRunInfo


class HungServer(threading.Thread):
    """Accepts every connection on a loopback port (bound by the OS) and never answers one."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.uri = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []  # held open: the client waits for its timeout

    def run(self) -> None:
        with contextlib.suppress(OSError):  # the listening socket closed: done
            while True:
                self.connections.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def hung_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HungServer]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    server = HungServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def trial_run(uri: str) -> TrialRun:
    return TrialRun(TrialRunInfo(uri, "0", "parent", "s", "s-1", "abc"), trial_id="t1", trial_name="trial_t1")


def warm_up_mlflow() -> None:
    """Import and use MLflow's client and HTTP stack once, against a port that refuses at once."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: a connection is refused
        warm = trial_run(f"http://127.0.0.1:{closed.getsockname()[1]}")
        began = time.monotonic()
        warm.log_epoch({"epoch": 1, "val/score": 0.1})
        assert warm._failing_since is not None, "the warm-up request should have failed"
        assert time.monotonic() - began < 30, "warm-up took too long"


def test_a_hung_server_costs_one_timeout_per_backoff_window_not_per_epoch(hung_server: HungServer) -> None:
    warm_up_mlflow()
    run = trial_run(hung_server.uri)
    began = time.monotonic()
    for epoch in range(1, 11):  # ten fast epochs inside the first back-off window
        run.log_epoch({"epoch": epoch, "val/score": epoch / 10})
    elapsed = time.monotonic() - began
    assert len(hung_server.connections) == 1, "one request expected, not one per epoch"
    assert 0.9 < elapsed < 3.0, f"{elapsed:.1f}s: one timed-out request expected, not one per epoch"
    assert len(run._pending_metrics) == 20  # every epoch kept for later
    began = time.monotonic()
    assert run.finish(wait_s=0) is False  # finishing always tries (once more), then gives up
    assert 0.9 < time.monotonic() - began < 3.0
    assert len(hung_server.connections) == 2
