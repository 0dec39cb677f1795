"""MLflow tracking on a real SQLite store: idempotent trial runs, reconciliation, closing runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import epoch_steps, mlflow_client

from hemotune.metrics import finite_metrics, metric_key
from hemotune.results import TrialRecord
from hemotune.tracking import (
    SearchTracking,
    TrialRun,
    TrialRunInfo,
    child_runs,
    fail_fast_http,
    reconcile,
    resolve_tracking_uri,
)


@pytest.fixture
def search(tmp_path: Path) -> tuple[SearchTracking, TrialRunInfo]:
    uri, artifacts = resolve_tracking_uri(None, tmp_path)
    tracking = SearchTracking.start(
        tracking_uri=uri,
        artifact_location=artifacts,
        experiment_name="tracking_test",
        run_name="tracking_test-1",
        tags={"hemotune.search": "tracking_test"},
        params={"search": "tracking_test", "budget.epochs": 3},
    )
    info = TrialRunInfo(
        uri, tracking.experiment_id, tracking.parent_run_id, "tracking_test", "tracking_test-1", "abc"
    )
    return tracking, info


def test_metric_names_are_sanitised_and_non_finite_values_dropped() -> None:
    assert metric_key("metrics/mAP50-95(B)") == "metrics/mAP50-95_B_"
    assert finite_metrics({"a": 1, "b": float("nan"), "c": True, "d": "x", "e(1)": 2.5}) == {
        "a": 1.0,
        "c": 1.0,
        "e_1_": 2.5,
    }


def test_embedded_default_store_is_sqlite_in_the_results_folder(tmp_path: Path) -> None:
    uri, artifacts = resolve_tracking_uri(None, tmp_path / "r")
    assert uri == f"sqlite:///{tmp_path / 'r' / 'mlflow.db'}"
    assert artifacts == (tmp_path / "r" / "mlartifacts").as_uri()
    assert resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == ("http://127.0.0.1:5000", None)


def test_a_restarted_trial_continues_its_own_run_without_duplicate_epochs(search, tmp_path: Path) -> None:
    tracking, info = search
    first = TrialRun(info, trial_id="t1", trial_name="trial_t1")
    first.log_params({"lr": 0.1})
    for epoch in (1, 2):
        first.log_epoch({"epoch": epoch, "val/score": epoch / 10})
    # the process dies here (no finish); Ray restarts the trial from its epoch-1 checkpoint
    second = TrialRun(info, trial_id="t1", trial_name="trial_t1")
    second.log_params({"lr": 0.1})
    for epoch in (2, 3):
        second.log_epoch({"epoch": epoch, "val/score": epoch / 10})
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    second.log_artifacts({"weights/best.pt": weights})
    assert second.finish()
    assert second.run_id == first.run_id
    run = mlflow_client(info.tracking_uri).get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["hemotune.restarted"] == "true"
    assert run.data.tags["mlflow.parentRunId"] == tracking.parent_run_id
    assert epoch_steps(info.tracking_uri, first.run_id, "val/score") == [1, 2, 3]
    names = [a.path for a in mlflow_client(info.tracking_uri).list_artifacts(first.run_id, "weights")]
    assert names == ["weights/best.pt"]


def test_unreachable_server_buffers_and_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what run_trial sets in trial processes: fail fast, hemotune buffers and retries itself
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    info = TrialRunInfo("http://127.0.0.1:9", "0", "parent", "s", "s-1", "abc")
    run = TrialRun(info, trial_id="t1", trial_name="trial_t1")
    run.log_params({"lr": 0.1})
    run.log_epoch({"epoch": 1, "val/score": 0.5})
    assert len(run._pending_metrics) == 2 and run._pending_params  # kept for the next attempt
    assert run.finish(wait_s=0) is False


def test_reconcile_fills_missing_epochs_creates_missing_runs_and_retires_orphans(search) -> None:
    tracking, info = search
    partial = TrialRun(info, trial_id="t1", trial_name="trial_t1")
    partial.log_epoch({"epoch": 1, "val/score": 0.1})
    orphan = TrialRun(info, trial_id="ghost", trial_name="trial_ghost")
    orphan.log_epoch({"epoch": 1, "val/score": 0.9})
    history = [
        {"epoch": e, "val/score": e / 10, "timestamp": 1_700_000_000 + e, "time_this_iter_s": 1.0}
        for e in (1, 2, 3)
    ]
    records = [
        TrialRecord("t1", "trial_t1", "TERMINATED", {"lr": 0.1}, history),
        TrialRecord("t2", "trial_t2", "ERROR", {"lr": 0.2}, history[:1], error="boom"),
    ]
    report = reconcile(info, records, objective="val/score", mode="max", search_finished=True)
    assert report.runs_created == 1 and report.epochs_filled == 3  # t1: epochs 2, 3; t2: epoch 1
    assert report.orphans_retired == ["ghost"]
    children = {r.data.tags["hemotune.trial_id"]: r for r in _children(tracking)}
    assert set(children) == {"t1", "t2"}
    assert children["t1"].info.status == "FINISHED" and children["t2"].info.status == "FAILED"
    assert children["t2"].data.tags["hemotune.error"] == "boom"
    assert epoch_steps(info.tracking_uri, children["t1"].info.run_id, "val/score") == [1, 2, 3]
    assert "time_this_iter_s" not in children["t1"].data.metrics
    assert math.isclose(children["t1"].data.metrics["best/val/score"], 0.3)
    assert children["t1"].data.params["lr"] == "0.1"
    again = reconcile(info, records, objective="val/score", mode="max", search_finished=True)
    assert again.runs_created == 0 and again.epochs_filled == 0  # idempotent


def test_a_failed_search_leaves_no_run_running(search) -> None:
    tracking, info = search
    TrialRun(info, trial_id="t1", trial_name="trial_t1").log_epoch({"epoch": 1, "val/score": 0.1})
    tracking.finish("FAILED")
    client = mlflow_client(info.tracking_uri)
    assert client.get_run(tracking.parent_run_id).info.status == "FAILED"
    assert [r.info.status for r in _children(tracking)] == ["KILLED"]


def test_reopened_parent_is_running_again(search) -> None:
    tracking, info = search
    tracking.finish("KILLED")
    again = SearchTracking.reopen(
        tracking_uri=info.tracking_uri, experiment_id=info.experiment_id, parent_run_id=info.parent_run_id
    )
    client = mlflow_client(info.tracking_uri)
    assert client.get_run(again.parent_run_id).info.status == "RUNNING"
    again.finish()
    assert client.get_run(again.parent_run_id).info.status == "FINISHED"


def _children(tracking: SearchTracking) -> list:
    return child_runs(tracking.client, tracking.experiment_id, tracking.parent_run_id)


def test_artifact_copies_wait_in_the_trial_folder_and_go_once_logged(search, tmp_path: Path) -> None:
    """A trial ASHA stops never reaches finish(): its queued copies must not pile up in the temp folder."""
    _, info = search
    best = tmp_path / "best.pt"
    best.write_bytes(b"weights of epoch 1")
    pending = tmp_path / "trial" / "pending"
    run = TrialRun(info, trial_id="t1", trial_name="trial_t1", stash_dir=pending)
    run.log_artifacts({"weights/best.pt": best})
    assert [a.path for a in mlflow_client(info.tracking_uri).list_artifacts(run.run_id, "weights")] == [
        "weights/best.pt"
    ]
    assert pending.is_dir() and not [p for p in pending.rglob("*") if p.is_file()]  # logged, so deleted
    down = TrialRun(
        TrialRunInfo("http://127.0.0.1:9", "0", "parent", "s", "s-1", "abc"),
        trial_id="t2",
        trial_name="trial_t2",
        stash_dir=pending,
    )
    with fail_fast_http():
        down.log_artifacts({"weights/best.pt": best})
    kept = [p for p in pending.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in kept] == [b"weights of epoch 1"]  # kept for the retry


def test_calls_during_another_threads_send_return_at_once_and_keep_their_order(
    search, tmp_path: Path
) -> None:
    """While the start-up send holds the run (importing MLflow, in a new trial), training never waits.

    The trainer's calls leave their changes in the inbox; the next send applies them in call order,
    with the timestamps of the calls; an artifact replaced before it was sent goes once, newest copy.
    """
    import threading
    import time

    _, info = search
    run = TrialRun(info, trial_id="t1", trial_name="trial_t1", stash_dir=tmp_path / "pending")
    run.log_params({"lr": 0.1})  # the run exists; now another thread holds it for a long send
    holding, release = threading.Event(), threading.Event()

    def slow_send() -> None:
        with run._lock:
            holding.set()
            release.wait(30)

    sender = threading.Thread(target=slow_send)
    sender.start()
    assert holding.wait(10)
    weights = tmp_path / "best.pt"
    began = time.monotonic()
    stamps = []
    for epoch in (1, 2, 3):
        stamps.append(int(time.time() * 1000))
        run.log_epoch({"epoch": epoch, "val/score": epoch / 10})
        weights.write_bytes(f"epoch {epoch}".encode())
        run.log_artifacts({"weights/best.pt": weights})
        time.sleep(0.01)
    run.set_tags({"hemotune.note": "queued"})
    waited = time.monotonic() - began
    assert waited < 2.0, f"the calls waited {waited:.1f} s for the other thread's send"
    assert len(run._inbox) == 7 and not run._pending_metrics  # nothing applied while the lock is held
    release.set()
    sender.join(10)
    assert run.finish()
    client = mlflow_client(info.tracking_uri)
    history = client.get_metric_history(run.run_id, "val/score")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    for m, stamp in zip(history, stamps, strict=True):  # stamped at the call, not at the send
        assert stamp <= m.timestamp <= stamp + 1000
    assert client.get_run(run.run_id).data.tags["hemotune.note"] == "queued"
    local = client.download_artifacts(run.run_id, "weights/best.pt", str(tmp_path / "down"))
    assert Path(local).read_bytes() == b"epoch 3"
    assert [a.path for a in client.list_artifacts(run.run_id, "weights")] == ["weights/best.pt"]
    assert not (tmp_path / "pending").exists() or not any(
        p.is_file() for p in (tmp_path / "pending").rglob("*")
    )
