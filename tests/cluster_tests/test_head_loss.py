"""Head-node loss, end to end: the head dies mid-search, a new head, ``--resume`` from S3, ``hemotune sync``.

A loopback cluster (``cluster_stack.Stack``: a CPU-less Ray head, two 1-CPU workers,
``moto_server`` as S3, ``mlflow server --app-name basic-auth`` on a real PostgreSQL,
artifacts proxied to S3) runs a synthetic search whose Tune storage and dataset are in
S3, driven by ``hemotune search`` in a subprocess. Once two trials have finished in
the experiment state Tune saved to S3 and another has a checkpoint there, the head is
lost (``head_loss_stack.lose_head``): the driver, the Ray head, the MLflow server and
PostgreSQL are SIGKILLed by PID, and the database, the head's Ray temp folder, the
driver's local results folder and its dataset cache are deleted; the workers are
stopped. A new head (new Ray head on a new address, new empty PostgreSQL, new MLflow
server) gets two new workers, then, as docs/distributed.md tells a user:

    hemotune search NAME --resume --address NEW --results-dir s3://... --tracking-uri NEW
    hemotune sync NAME --results-dir s3://... --tracking-uri NEW

Checked: every trial completes exactly once in Tune (the finished ones are not re-run)
and hemotune reads every epoch of every trial back from S3 (Tune's ``result.json`` of a
trial running when the head died can lack epochs the head had not uploaded yet; the
trial's own ``hemotune_epochs.jsonl`` has them); the new server holds the parent and
exactly one FINISHED child per trial, each with every epoch of every metric the trial
reported (steps 1..epochs, no gap, no duplicate), its
params, its resolved config, its newest checkpoint and its best weights (copied to the
trial's folder in S3 by the trial itself, so they outlive the head); the runs are rows
of the new PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_stack import Stack, as_mlflow_user, wait_for
from head_loss_stack import lose_head, new_head
from helpers import mlflow_client, search_tree
from test_cluster import (
    experiment_prefix,
    hemotune_records,
    results_dir,
    search_args,
    space_file,
    start_driver,
    tune_results,
    tune_state,
    upload_synthetic_dataset,
    wait_driver,
)

from hemotune.metrics import finite_metrics
from hemotune.results import epoch_metrics

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.head_loss]

NAME, SAMPLES, EPOCHS = "dist_head_loss", 4, 3
#: Epochs longer than half of Tune's 5 s state period (see test_cluster's driver-kill test).
EPOCH_S = 2.6
TIMINGS: dict[str, Any] = {}


@pytest.fixture
def stack() -> Iterator[Stack]:
    began = time.time()
    stack = Stack()
    TIMINGS.update(stack.timings, stack_start_s=time.time() - began)
    try:
        with as_mlflow_user(stack):
            yield stack
    finally:
        print(
            f"\nhead-loss timings: { {k: round(v, 1) if isinstance(v, float) else v for k, v in TIMINGS.items()} }"
        )


def artifact_files(client: Any, run_id: str, path: str = "") -> set[str]:
    """Every file under a run's artifact root (recursively)."""
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path or None):
        found |= artifact_files(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def kill_head_mid_search(stack: Stack, tmp: Path, args: list[str]) -> tuple[str, set[str]]:
    """Run the search until two trials are finished in S3 and a third has a checkpoint there; lose the head.

    Returns the experiment's S3 prefix and the trials finished before the loss.
    """
    driver = start_driver(stack, NAME, args, tmp)
    began = time.time()
    try:
        wait_for(lambda: experiment_prefix(stack, NAME), 90, "the experiment in S3", interval=0.5)
        prefix = experiment_prefix(stack, NAME)

        def midway() -> bool:
            assert driver.alive(), driver.output()[-3000:]
            states = tune_state(stack, prefix)
            done = {t for t, s in states.items() if s == "TERMINATED"}
            keys = stack.keys(prefix + "/")
            checkpointed = {
                t for t in states if any(k.startswith(f"{prefix}/trial_{t}/checkpoint_") for k in keys)
            }
            return len(done) >= 2 and bool(checkpointed - done)

        wait_for(midway, 180, "two finished trials and a third checkpointed, in S3", interval=0.5)
        TIMINGS["search_before_loss_s"] = time.time() - began
        TIMINGS.update(lose_head(stack, driver, tmp / "local"))
    finally:
        driver.kill()
    finished = {t for t, s in tune_state(stack, prefix).items() if s == "TERMINATED"}
    TIMINGS["trials_finished_before_loss"] = len(finished)
    return prefix, finished


def test_the_head_lost_mid_search_a_new_head_resumes_and_sync_rebuilds_the_tree(
    tmp_path: Path, stack: Stack
) -> None:
    data_uri = upload_synthetic_dataset(stack, tmp_path / "dataset", NAME)
    space = space_file(tmp_path, NAME, data_uri, epochs=EPOCHS, samples=SAMPLES, seconds=EPOCH_S)
    lost_uri = stack.mlflow.uri
    prefix, finished = kill_head_mid_search(stack, tmp_path, search_args(stack, space, tmp_path))
    before = tune_results(stack, prefix)

    TIMINGS.update({f"new_{k}": v for k, v in new_head(stack).items()})
    assert stack.mlflow.uri != lost_uri
    assert mlflow_client(stack.mlflow.uri).get_experiment_by_name(NAME) is None  # a new, empty server
    common = ["--results-dir", results_dir(stack), "--tracking-uri", stack.mlflow.uri]
    began = time.time()
    resume = start_driver(
        stack,
        "resume",
        [
            "search",
            NAME,
            "--resume",
            "--address",
            stack.ray.address,
            *common,
            "--local-dir",
            str(tmp_path / "local2"),
            "--no-progress",
        ],
        tmp_path,
    )
    code = wait_driver(resume, 240)
    TIMINGS["resume_s"] = time.time() - began
    assert code == 0, resume.output()[-4000:]
    assert "resuming" in resume.output()

    after = tune_results(stack, prefix)
    assert sorted(after) == sorted(tune_state(stack, prefix)) and len(after) == SAMPLES, sorted(after)
    assert set(tune_state(stack, prefix).values()) == {"TERMINATED"}
    # The head was SIGKILLed, its driver with it: as with a killed driver, a trial's result.json in
    # S3 can lack epochs the trial reported (Tune uploads the driver's folder in the background),
    # and a trial restored on the new head has Tune write that file from the restore on (CI once
    # saw a restored trial's result.json hold epochs [2, 3]). The trial's own record
    # (hemotune_epochs.jsonl) holds every epoch: hemotune's reading of the trials has them all.
    records = hemotune_records(stack, prefix, space)
    assert sorted(records) == sorted(after)
    for trial, rows in after.items():
        assert {int(r["epoch"]) for r in rows} <= set(range(1, EPOCHS + 1)), (trial, rows)
        assert [int(r["epoch"]) for r in records[trial].history] == list(range(1, EPOCHS + 1)), trial
    for trial in finished:  # not re-run: every row predates the resume
        assert after[trial] == before[trial], trial
        assert all(float(r["timestamp"]) < began for r in after[trial]), f"{trial} was re-run"

    # The resumed search logged into a new parent; its end created the children of the trials finished before.
    _, resumed_children = search_tree(stack.mlflow.uri, NAME)
    assert sorted(r.data.tags["hemotune.trial_id"] for r in resumed_children) == sorted(after)

    began = time.time()
    sync = start_driver(stack, "sync", ["sync", NAME, *common], tmp_path)
    code = wait_driver(sync, 120)
    TIMINGS["sync_s"] = time.time() - began
    assert code == 0, sync.output()[-3000:]
    print(sync.output()[-1500:])

    client = mlflow_client(stack.mlflow.uri)
    parent, children = search_tree(stack.mlflow.uri, NAME)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["hemotune.rebuilt_from"].startswith(lost_uri)
    assert {"ranking.md", "config/search_space.yaml"} <= artifact_files(client, parent.info.run_id)
    runs = {r.data.tags["hemotune.trial_id"]: r for r in children}
    assert len(children) == SAMPLES and sorted(runs) == sorted(after), "exactly one child per trial"
    for trial, record in records.items():
        run = runs[trial]
        assert run.info.status == "FINISHED", (trial, run.info.status)
        assert float(run.data.params["lr"]) == pytest.approx(float(record.config["lr"]))
        last = {
            int(r["epoch"]): finite_metrics(epoch_metrics(r)) for r in record.history
        }  # what sync logs: each epoch's first report
        for key in last[1]:
            history = client.get_metric_history(run.info.run_id, key)
            assert [int(m.step) for m in sorted(history, key=lambda m: m.step)] == list(
                range(1, EPOCHS + 1)
            ), (trial, key)
            assert {int(m.step): m.value for m in history} == pytest.approx(
                {epoch: float(values[key]) for epoch, values in last.items()}
            ), (trial, key)
        files = artifact_files(client, run.info.run_id)
        assert "config/resolved.yaml" in files, (trial, files)
        assert "weights/best.json" in files, (trial, files)  # the best weights outlived the head
        assert any(f.startswith("checkpoint/checkpoint_") and f.endswith("/state.json") for f in files), files
    assert not [r for r in client.search_runs([parent.info.experiment_id]) if r.info.status == "RUNNING"]
    assert stack.postgres is not None
    rows = stack.postgres.sql("SELECT count(*) FROM runs", "mlflow")
    assert rows[0][0] == SAMPLES + 1, "the parent and the children are rows of the new PostgreSQL"
