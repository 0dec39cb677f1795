"""Distributed searches for real: a 3-node Ray cluster, an MLflow server, S3 -- and things killed mid-search.

One module-scoped stack (see ``cluster_stack.py``): a head node with no CPUs (it
only coordinates, like the head of cluster/cluster.yaml) and two 1-CPU worker
nodes, each with its own temp dir, address and hemotune cache; ``mlflow server
--workers 1 --app-name basic-auth`` with a PostgreSQL backend store (a real
``postgres`` on loopback), proxying artifacts to S3 (cluster/cluster.yaml's
production option); ``moto_server`` as the S3 endpoint. Drivers log in from a 0600
credentials file; the Ray nodes are given no credentials, so trials on them log in
through the file path the driver hands Ray. Tune's storage, the dataset and MLflow's
artifacts are all in the bucket. AWS credentials and the MLflow and database
passwords are recognisable fakes, and a final test searches everything the
searches produced for them; another checks that no process of the
module had a socket to an address off loopback.

Every after-state is checked the same way: each trial completed exactly once,
epoch histories continuous, no run left RUNNING, every epoch Tune recorded is in
MLflow.

Any subset of the tests runs alone (``-k NAME``): each gets two live worker nodes
(a node killed by an earlier test is replaced), the ``hemotune sync`` test shares
the MLflow-outage search through a fixture, and the two tests that search what the
module left behind run a small search first if no other test has.
"""

from __future__ import annotations

import json
import math
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_stack import Service, Stack, as_mlflow_user, wait_for
from helpers import REPO, epoch_steps, mlflow_client, search_tree, synthetic_space_file
from mlflow_services import status_of

from hemotune.offline import temporary_env
from hemotune.results import TrialRecord, read_trials
from hemotune.spaces import load_space

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

DATA_FILES = {"README": "synthetic curves need no data\n", "a/one.txt": "1\n" * 100, "b/two.bin": "2" * 5000}
TIMINGS: dict[str, Any] = {}
DRIVER_LOGS: list[Path] = []
SEARCHES: list[str] = []  # searches of this module checked complete (assert_complete)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Stack]:
    """The module's stack, shared by every test (use ``stack`` in a test: it checks the workers first)."""
    began = time.time()
    stack = Stack()
    TIMINGS.update(stack.timings, stack_start_s=time.time() - began)
    try:
        with as_mlflow_user(stack):
            yield stack
    finally:
        print(
            f"\ncluster test timings: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in TIMINGS.items()})}"
        )


@pytest.fixture
def stack(cluster: Stack) -> Stack:
    """The shared stack with two live worker nodes, whatever an earlier test killed."""
    cluster.ensure_workers(2)
    return cluster


def upload_synthetic_dataset(stack: Stack, local: Path, name: str) -> str:
    from hemotune.data.remote import upload_dataset

    for file_name, text in DATA_FILES.items():
        (local / file_name).parent.mkdir(parents=True, exist_ok=True)
        (local / file_name).write_text(text)
    uri = f"s3://{stack.bucket}/datasets/{name}"
    assert upload_dataset(local, uri, client=stack.client()) == len(DATA_FILES)
    return uri


@pytest.fixture(scope="module")
def data_uri(cluster: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    return upload_synthetic_dataset(cluster, tmp_path_factory.mktemp("dataset"), "synthetic")


# ----------------------------------------------------------------------------- helpers


def space_file(
    tmp: Path,
    name: str,
    data_uri: str,
    *,
    epochs: int,
    samples: int,
    concurrent: int = 2,
    seconds: float = 0.5,
    max_failures: int = 0,
    points: list[dict[str, Any]] | None = None,
) -> Path:
    return synthetic_space_file(
        tmp,
        name=name,
        dataset={"path": data_uri, "expect_files": len(DATA_FILES)},
        fixed={"seconds_per_epoch": seconds},
        budget={
            "num_samples": samples,
            "max_concurrent": concurrent,
            "epochs": epochs,
            "grace_period": epochs,
            "reduction_factor": 2,
            "max_failures": max_failures,
        },
        resources={"cpu": 1},
        **({"points_to_evaluate": points} if points is not None else {}),
    )


def results_dir(stack: Stack) -> str:
    return f"s3://{stack.bucket}/tune"


def search_args(stack: Stack, space: Path, tmp: Path) -> list[str]:
    return [
        "search",
        str(space),
        "--address",
        stack.ray.address,
        "--results-dir",
        results_dir(stack),
        "--tracking-uri",
        stack.mlflow.uri,
        "--local-dir",
        str(tmp / "local"),
        "--no-progress",
    ]


def start_driver(
    stack: Stack,
    name: str,
    args: list[str],
    tmp: Path,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> Service:
    """``hemotune ARGS`` (or ``python SCRIPT ARGS``) as a process tree this test ends by PID."""
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "hemotune"]
    log_name = f"driver-{name}-{int(time.time() * 1000)}"
    driver_env = {**stack.env, **stack.driver_env(), **(env or {})}
    # The log lives as long as the module's stack (a passed test's tmp_path is deleted when it ends):
    # test_no_credential_appears_in_mlflow_s3_logs_or_output reads every driver's log at the end.
    logs = stack.root / "driver-logs"
    logs.mkdir(exist_ok=True)
    driver = Service(log_name, [*command, *args], logs, driver_env, cwd=tmp)
    DRIVER_LOGS.append(driver.log)
    stack.services.append(driver)
    return driver


def wait_driver(driver: Service, timeout: float) -> int:
    try:
        return driver.proc.wait(timeout=timeout)
    except Exception:
        driver.kill()
        raise AssertionError(f"driver did not finish in {timeout}s:\n{driver.output()[-4000:]}") from None


def experiment_prefix(stack: Stack, name: str) -> str:
    """The S3 prefix of the (single) Tune experiment of search ``name``."""
    roots = {k.split("/")[1] for k in stack.keys("tune/") if k.split("/")[1].startswith(f"{name}-")}
    assert len(roots) == 1, roots
    return f"tune/{roots.pop()}"


def tune_results(stack: Stack, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """trial id -> the result rows Tune stored in S3 (one per reported epoch)."""
    out = {}
    for key in stack.keys(prefix + "/"):
        match = re.fullmatch(rf"{re.escape(prefix)}/trial_([^/]+)/result\.json", key)
        if match:
            out[match.group(1)] = [
                json.loads(line) for line in stack.read(key).decode().splitlines() if line.strip()
            ]
    return out


def assert_epochs_once_except_after_a_restore(trial_id: str, rows: list[dict[str, Any]], epochs: int) -> None:
    """Tune's rows cover epochs 1..N; an epoch appears twice only where the trial was restored.

    A trial restored from a checkpoint older than its last reported result (the driver's
    state in S3 is saved every few seconds, results are written as they come) redoes the
    epochs after that checkpoint: Tune then records them again after the restore.
    """
    seen = [int(r["epoch"]) for r in rows]
    assert sorted(set(seen)) == list(range(1, epochs + 1)), (trial_id, seen)
    for i in range(1, len(rows)):
        if seen[i] <= seen[i - 1]:  # a step back: only right at a restore, to the checkpoint's next epoch
            assert int(rows[i]["iterations_since_restore"]) == 1, (trial_id, seen)
        else:
            assert seen[i] == seen[i - 1] + 1, (trial_id, seen)


def hemotune_records(stack: Stack, prefix: str, space: Path) -> dict[str, TrialRecord]:
    """trial id -> the trial as hemotune reads it from S3 (``read_trials``: Tune's rows and the trial's own record).

    What ``hemotune sync``, the ranking and the report use: where a killed driver (or head)
    left a ``result.json`` without some epochs, the trial's ``hemotune_epochs.jsonl`` has them.
    """
    with temporary_env({k: v for k, v in stack.env.items() if k.startswith("AWS_")}):
        records = read_trials(f"s3://{stack.bucket}/{prefix}", load_space(str(space), check_data=False))
    return {r.trial_id: r for r in records}


def tune_state(stack: Stack, prefix: str) -> dict[str, str]:
    """trial id -> status in the newest experiment state Tune saved to S3."""
    states = sorted(
        k
        for k in stack.keys(prefix + "/")
        if re.fullmatch(rf"{re.escape(prefix)}/experiment_state-.*\.json", k)
    )
    if not states:
        return {}
    data = json.loads(stack.read(states[-1]))
    trials = [json.loads(trial_json) for trial_json, _ in data["trial_data"]]
    return {t["trial_id"]: t["status"] for t in trials}


def assert_complete(
    stack: Stack, name: str, *, samples: int, epochs: int, driver_killed: bool = False
) -> tuple[Any, list[Any]]:
    """Each trial completed exactly once; MLflow holds one FINISHED run per trial with every epoch.

    ``driver_killed``: Tune uploads its driver folder file by file in the background, so a
    driver killed mid-upload can leave a ``result.json`` in S3 that lacks rows the trial did
    report (and MLflow did get). Tune's history is then only checked to be part of MLflow's.
    A killed driver can also leave the folder of a trial it had started but whose experiment
    state never reached S3: the resumed search does not know that trial (hemotune reads trials
    from the experiment state, and retires its MLflow run), so only the state's trials count.
    """
    parent, children = search_tree(stack.mlflow.uri, name)
    assert parent.info.status == "FINISHED", parent.info.status
    prefix = experiment_prefix(stack, name)
    state = tune_state(stack, prefix)
    assert len(state) == samples and set(state.values()) == {"TERMINATED"}, state
    folders = tune_results(stack, prefix)
    unknown = sorted(set(folders) - set(state))
    assert not unknown or driver_killed, f"trial folders unknown to Tune's state: {unknown}"
    TIMINGS.setdefault("trial_folders_unknown_to_the_resumed_state", {})[name] = len(unknown)
    assert set(state) <= set(folders), (sorted(state), sorted(folders))
    results = {t: rows for t, rows in folders.items() if t in state}
    for trial_id, rows in results.items():
        if driver_killed:
            assert {int(r["epoch"]) for r in rows} <= set(range(1, epochs + 1)), (trial_id, rows)
        else:
            assert_epochs_once_except_after_a_restore(trial_id, rows, epochs)
    trial_ids = [r.data.tags["hemotune.trial_id"] for r in children]
    assert sorted(trial_ids) == sorted(results), "one MLflow child run per Tune trial"
    for run in children:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        assert run.data.tags.get("hemotune.outcome") == "completed"
        for key in ("epoch", "val/score", "train/loss"):
            assert epoch_steps(stack.mlflow.uri, run.info.run_id, key) == list(range(1, epochs + 1)), (
                run.info.run_name,
                key,
            )
        rows = results[run.data.tags["hemotune.trial_id"]]
        logged = {
            int(m.step): m.value
            for m in mlflow_client(stack.mlflow.uri).get_metric_history(run.info.run_id, "val/score")
        }
        recorded = {
            int(r["epoch"]): r["val/score"] for r in rows
        }  # no metric lost: Tune's epochs are in MLflow
        assert {e: logged.get(e) for e in recorded} == pytest.approx(recorded), "MLflow and Tune disagree"
    SEARCHES.append(name)
    return parent, children


# ----------------------------------------------------------------------------- tests


def test_submit_script_runs_a_search_spread_over_nodes_with_state_and_artifacts_in_s3(
    stack: Stack, tmp_path: Path
) -> None:
    """cluster/hemotune_submit.py (what `ray submit` runs) drives a search over the 3-node cluster."""
    name = "dist_spread"
    samples, epochs = 4, 3
    # A dataset of its own: no other test of the module can have fetched it into a cache before.
    data_uri = upload_synthetic_dataset(stack, tmp_path / "dataset", name)
    workers = set(stack.ray.live_workers())
    space = space_file(tmp_path, name, data_uri, epochs=epochs, samples=samples)
    env = {
        "RAY_ADDRESS": stack.ray.address,
        "HEMOTUNE_RESULTS_DIR": results_dir(stack),
        "HEMOTUNE_TRACKING_URI": stack.mlflow.uri,
    }
    began = time.time()
    args = [str(space), "--local-dir", str(tmp_path / "local")]
    driver = start_driver(
        stack, name, args, tmp_path, script=REPO / "cluster" / "hemotune_submit.py", env=env
    )
    code = wait_driver(driver, 240)
    TIMINGS["spread_search_s"] = time.time() - began
    output = driver.output()
    assert code == 0, output[-4000:]
    assert f"--address {stack.ray.address}" in output and f"--tracking-uri {stack.mlflow.uri}" in output

    parent, children = assert_complete(stack, name, samples=samples, epochs=epochs)
    nodes = {stack.ray.name_of(r.data.tags["hemotune.node_id"]) for r in children}
    assert len(workers) == 2 and nodes == workers, (nodes, workers)  # the CPU-less head runs no trial
    assert {r.data.tags["hemotune.node_ip"] for r in children} == {stack.ray.ip[n] for n in workers}
    assert all(r.data.tags["hemotune.gpu_ids"] == "none" for r in children)

    prefix = experiment_prefix(stack, name)
    keys = stack.keys(prefix + "/")
    assert f"{prefix}/hemotune_search.json" in keys
    assert f"{prefix}/tuner.pkl" in keys
    assert any(re.fullmatch(rf"{prefix}/experiment_state-.*\.json", k) for k in keys)
    for run in children:
        trial_dir = f"{prefix}/trial_{run.data.tags['hemotune.trial_id']}"
        checkpoints = [
            k for k in keys if k.startswith(trial_dir + "/checkpoint_") and k.endswith("/state.json")
        ]
        assert checkpoints, f"no checkpoint of {trial_dir} in S3"
    assert json.loads(stack.read(f"{prefix}/hemotune_search.json"))["status"] == "finished"

    # MLflow artifacts went through the server into the bucket.
    experiment = mlflow_client(stack.mlflow.uri).get_experiment_by_name(name)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    artifact_keys = stack.keys(f"mlflow/{experiment.experiment_id}/")
    assert any(k.endswith(f"{parent.info.run_id}/artifacts/config/search_space.yaml") for k in artifact_keys)
    for run in children:
        assert any(k.endswith(f"{run.info.run_id}/artifacts/weights/best.json") for k in artifact_keys), (
            run.info.run_name
        )

    # The dataset was fetched once by the driver and once per worker node, however many trials ran there.
    per_node = {
        n: sum(1 for r in children if stack.ray.name_of(r.data.tags["hemotune.node_id"]) == n) for n in nodes
    }
    assert max(per_node.values()) >= 2, per_node
    for cache in [stack.driver_cache, *(stack.node_cache(n) for n in nodes)]:
        log = (cache / "s3" / "fetch-log.jsonl").read_text().splitlines()
        fetches = [f for f in map(json.loads, log) if f["uri"] == data_uri]  # the cache is the module's
        assert len(fetches) == 1, (cache, fetches)
        assert fetches[0]["downloaded"] == len(DATA_FILES)


def test_evaluate_retrains_on_the_cluster_with_address_and_logs_under_the_parent(
    stack: Stack, tmp_path: Path
) -> None:
    """``hemotune evaluate --address`` (issue 8): the spread search's best and its baseline retrained
    on the worker nodes as a Tune run in S3, each an evaluation child under the search's parent."""
    name = "dist_spread"
    test_set = tmp_path / "independent_test"  # the synthetic trainer's test set: any folder (loopback nodes)
    test_set.mkdir()
    (test_set / "images.txt").write_text("synthetic test images\n")
    args = ["evaluate", name, "--top", "1", "--seeds", "1", "--test", str(test_set)]
    args += search_args(stack, tmp_path / "unused.yaml", tmp_path)[2:-1]  # --address ... --local-dir
    driver = start_driver(stack, f"{name}-evaluate", args, tmp_path)
    code = wait_driver(driver, 180)
    assert code == 0, driver.output()[-4000:]
    assert "## Compared with the baseline" in driver.output()
    parent, children = search_tree(stack.mlflow.uri, name)
    evaluation = [c for c in children if c.data.tags["hemotune.role"] == "evaluation"]
    assert len(evaluation) == 2 and all(c.info.status == "FINISHED" for c in evaluation)
    assert all(math.isfinite(c.data.metrics["test/score"]) for c in evaluation)
    workers = {stack.ray.ip[n] for n in stack.ray.live_workers()}
    assert {c.data.tags["hemotune.node_ip"] for c in evaluation} <= workers  # the CPU-less head ran none
    artifacts = {a.path for a in mlflow_client(stack.mlflow.uri).list_artifacts(parent.info.run_id)}
    assert {"evaluation.json", "evaluation.md"} <= artifacts
    prefix = experiment_prefix(stack, name)
    assert any(k.startswith(prefix + "/evaluation-") for k in stack.keys(prefix + "/")), (
        "no evaluation run in S3"
    )


def test_a_worker_node_lost_mid_trial_costs_one_trial_at_most_one_epoch(
    stack: Stack, data_uri: str, tmp_path: Path
) -> None:
    """SIGKILL of every process of the node running a trial: the trial resumes from its S3 checkpoint elsewhere."""
    name = "dist_node_loss"
    samples, epochs = 2, 8
    points = [{"lr": 0.01, "plateau": 1.0}, {"lr": 0.02, "plateau": 0.9}]
    space = space_file(
        tmp_path, name, data_uri, epochs=epochs, samples=samples, seconds=0.7, max_failures=2, points=points
    )
    driver = start_driver(stack, name, search_args(stack, space, tmp_path), tmp_path)
    try:
        victim: dict[str, Any] = {}

        def a_trial_is_midway() -> bool:
            _, children = search_tree(stack.mlflow.uri, name)
            for run in children:
                done = epoch_steps(stack.mlflow.uri, run.info.run_id)
                if len(done) >= 3 and "hemotune.node_id" in run.data.tags:
                    victim.update(
                        trial=run.data.tags["hemotune.trial_id"], node_id=run.data.tags["hemotune.node_id"]
                    )
                    return True
            assert driver.alive(), driver.output()[-3000:]
            return False

        # (every poll is 3-4 requests to the one-worker MLflow server the trials log to: not too often)
        wait_for(a_trial_is_midway, 120, "a trial at epoch 3", interval=0.5)
        node = stack.ray.name_of(victim["node_id"])
        assert node in ("node1", "node2"), victim
        killed_ip = stack.ray.ip[node]
        killed_at = time.time()
        stack.ray.kill_node(node)
        logged_before_loss = len(epoch_steps(stack.mlflow.uri, victim_run_id(stack, name, victim["trial"])))
        assert stack.ensure_workers(2), "the killed node should have been replaced"  # capacity back
        code = wait_driver(driver, 240)
        TIMINGS["node_loss_search_s"] = time.time() - killed_at
    finally:
        driver.kill()
    assert code == 0, driver.output()[-4000:]

    _, children = assert_complete(stack, name, samples=samples, epochs=epochs)
    run = next(r for r in children if r.data.tags["hemotune.trial_id"] == victim["trial"])
    assert run.data.tags.get("hemotune.restarted") == "true"
    assert run.data.tags["hemotune.node_id"] != victim["node_id"], "the trial finished on the dead node?"
    rows = tune_results(stack, experiment_prefix(stack, name))[victim["trial"]]
    # At most one epoch (the one in flight) was done twice, then recorded twice by Tune; once in MLflow.
    seen = [int(r["epoch"]) for r in rows]
    assert len(seen) - len(set(seen)) <= 1, seen
    restarts = [r for r in rows if int(r["iterations_since_restore"]) == 1 and int(r["epoch"]) > 1]
    assert len(restarts) == 1, [(r["epoch"], r["iterations_since_restore"], r["node_ip"]) for r in rows]
    resumed_at = int(restarts[0]["epoch"])  # the first epoch after the restored checkpoint
    # The trial logs an epoch, then reports it with its checkpoint: killed in between, that epoch is redone.
    assert logged_before_loss <= resumed_at <= logged_before_loss + 1, (logged_before_loss, resumed_at)
    restart = rows.index(restarts[0])
    assert {r["node_ip"] for r in rows[:restart]} == {killed_ip}  # before the loss: the killed node
    assert killed_ip not in {r["node_ip"] for r in rows[restart:]}  # after it: elsewhere
    TIMINGS["node_loss_epochs_redone"] = logged_before_loss + 1 - resumed_at


def victim_run_id(stack: Stack, name: str, trial_id: str) -> str:
    _, children = search_tree(stack.mlflow.uri, name)
    return next(r.info.run_id for r in children if r.data.tags["hemotune.trial_id"] == trial_id)


def test_a_killed_driver_resumes_from_the_s3_experiment_state(
    stack: Stack, data_uri: str, tmp_path: Path
) -> None:
    """SIGKILL of `hemotune search --address ...`; `--resume` continues from S3 without re-running finished trials."""
    name = "dist_driver_kill"
    samples, epochs = 4, 2
    # Epochs of 2.6 s: two checkpoints of a trial take longer than Tune's 5 s save period, as with
    # real training. Faster epochs make Tune force a save after every second checkpoint, while its
    # previous upload may still be copying the files: the snapshot in S3 can then mix an experiment
    # state with an older searcher state (docs/distributed.md), and a resumed search may run more
    # or fewer trials than num_samples.
    space = space_file(tmp_path, name, data_uri, epochs=epochs, samples=samples, seconds=2.6)
    args = search_args(stack, space, tmp_path)
    first = start_driver(stack, name, args, tmp_path)
    synced_at: dict[str, float] = {}
    try:
        wait_for(lambda: experiment_prefix(stack, name), 90, "the experiment in S3", interval=0.5)
        prefix = experiment_prefix(stack, name)

        def two_trials_terminated_in_s3_state() -> bool:
            assert first.alive(), first.output()[-3000:]
            for trial, status in tune_state(stack, prefix).items():
                if status == "TERMINATED":
                    synced_at.setdefault(trial, time.time())
            return len(synced_at) >= 2

        wait_for(two_trials_terminated_in_s3_state, 180, "two finished trials in the S3 state", interval=0.5)
        first.kill()  # SIGKILL of the driver (its whole process tree: the cluster lives on)
    finally:
        first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    # State sync lag: a trial's MLflow run closing vs. the S3 experiment state saying TERMINATED (polled every 0.5 s).
    _, children = search_tree(stack.mlflow.uri, name)
    ends = {r.data.tags["hemotune.trial_id"]: r.info.end_time / 1000 for r in children if r.info.end_time}
    lags = [synced_at[t] - ends[t] for t in synced_at if t in ends]
    TIMINGS["state_sync_lag_s"] = [round(lag, 1) for lag in lags]
    before = tune_results(stack, prefix)
    finished_before = {t for t, status in tune_state(stack, prefix).items() if status == "TERMINATED"}
    assert len(finished_before) >= 2
    TIMINGS["driver_kill_results_behind_state"] = sum(
        len(before.get(t, [])) < epochs for t in finished_before
    )

    began = time.time()
    second = start_driver(stack, name + "-resume", [*args, "--resume"], tmp_path)
    try:
        code = wait_driver(second, 300)
    finally:
        second.kill()
    TIMINGS["resume_search_s"] = time.time() - began
    assert code == 0, second.output()[-4000:]
    assert "resuming" in second.output()
    after = tune_results(stack, prefix)
    for trial in finished_before:  # not re-run: every row predates the resume (rows still in flight may land)
        assert after[trial][: len(before[trial])] == before[trial], trial
        assert all(float(r["timestamp"]) < began for r in after[trial]), f"{trial} was re-run"
        assert not [
            r for r in after[trial] if int(r["iterations_since_restore"]) == 1 and int(r["epoch"]) > 1
        ]
    assert_complete(stack, name, samples=samples, epochs=epochs, driver_killed=True)
    assert json.loads(stack.read(f"{prefix}/hemotune_search.json"))["status"] == "finished"


OUTAGE_SEARCH, OUTAGE_SAMPLES, OUTAGE_EPOCHS, OUTAGE_EPOCH_S = "dist_mlflow_outage", 2, 18, 0.5


@pytest.fixture(scope="module")
def outage_search(cluster: Stack, data_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A search during which the MLflow server is stopped and restarted on its port and backend.

    Module-scoped: the outage test checks it, and ``hemotune sync`` rebuilds its tree.
    """
    stack, name = cluster, OUTAGE_SEARCH
    stack.ensure_workers(2)
    tmp = tmp_path_factory.mktemp("outage")
    space = space_file(
        tmp, name, data_uri, epochs=OUTAGE_EPOCHS, samples=OUTAGE_SAMPLES, seconds=OUTAGE_EPOCH_S
    )
    driver = start_driver(stack, name, search_args(stack, space, tmp), tmp)
    try:

        def both_trials_logging() -> bool:
            assert driver.alive(), driver.output()[-3000:]
            _, children = search_tree(stack.mlflow.uri, name)
            return len(children) == 2 and all(
                len(epoch_steps(stack.mlflow.uri, r.info.run_id)) >= 2 for r in children
            )

        wait_for(both_trials_logging, 120, "both trials logging epochs", interval=0.5)
        down_at = time.time()
        stack.mlflow.stop()
        time.sleep(3)
        restart_s = stack.mlflow.start()
        up_at = time.time()
        code = wait_driver(driver, 240)
    finally:
        driver.kill()
    TIMINGS["mlflow_restart_s"] = round(restart_s, 1)
    TIMINGS["mlflow_outage_s"] = round(up_at - down_at, 1)
    return {"code": code, "output": driver.output(), "down_at": down_at, "up_at": up_at}


def test_trials_keep_training_while_the_mlflow_server_is_down(
    stack: Stack, outage_search: dict[str, Any]
) -> None:
    """The MLflow server stopped mid-search and restarted on its port and backend: no epoch stalls, none is lost."""
    name, seconds = OUTAGE_SEARCH, OUTAGE_EPOCH_S
    down_at, up_at = outage_search["down_at"], outage_search["up_at"]
    assert outage_search["code"] == 0, outage_search["output"][-4000:]
    assert_complete(stack, name, samples=OUTAGE_SAMPLES, epochs=OUTAGE_EPOCHS)
    rows = [r for trial in tune_results(stack, experiment_prefix(stack, name)).values() for r in trial]
    during = [r for r in rows if down_at + 1 < float(r["timestamp"]) < up_at - 1]
    assert len(during) >= 4, "the trials did not train while MLflow was down"
    times = sorted(float(r["time_this_iter_s"]) for r in during)
    median, slowest = times[len(times) // 2], times[-1]
    TIMINGS.update(
        epochs_during_outage=len(during),
        median_epoch_during_outage_s=round(median, 2),
        slowest_epoch_during_outage_s=round(slowest, 2),
    )
    # (the MLflow server restarting takes a core of this 2-core machine: epochs slow a little anyway)
    assert median < seconds + 1.0, f"training slowed down while MLflow was down: median epoch {median:.1f}s"
    # At worst one request meets the half-started server and waits its timeout (10 s in trials, 1 retry).
    assert slowest < seconds + 2 * 10 + 1, f"an epoch took {slowest:.1f}s while MLflow was down"


def test_hemotune_sync_rebuilds_the_mlflow_tree_from_tune_results_in_s3(
    stack: Stack, outage_search: dict[str, Any], tmp_path: Path
) -> None:
    """`hemotune sync` re-creates missing child runs and epochs from Tune's results in S3 (after an outage at the end)."""
    name = OUTAGE_SEARCH
    assert outage_search["code"] == 0, outage_search["output"][-4000:]
    client = mlflow_client(stack.mlflow.uri)
    _, children = search_tree(stack.mlflow.uri, name)
    lost = children[0]
    client.delete_run(lost.info.run_id)  # as if its run never reached the server
    sync = start_driver(
        stack,
        "sync",
        ["sync", name, "--results-dir", results_dir(stack), "--tracking-uri", stack.mlflow.uri],
        tmp_path,
    )
    code = wait_driver(sync, 120)
    assert code == 0, sync.output()[-3000:]
    assert re.search(r"(\d+) epochs filled in, 1 runs created", sync.output()), sync.output()[-2000:]
    _, rebuilt = assert_complete(stack, name, samples=OUTAGE_SAMPLES, epochs=OUTAGE_EPOCHS)
    recreated = next(
        r for r in rebuilt if r.data.tags["hemotune.trial_id"] == lost.data.tags["hemotune.trial_id"]
    )
    assert recreated.info.run_id != lost.info.run_id
    assert float(recreated.data.params["lr"]) == pytest.approx(float(lost.data.params["lr"]))


@pytest.fixture(scope="module")
def searched(cluster: Stack, data_uri: str, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The searches this module checked complete; a small one is run here if no test ran one."""
    if not SEARCHES:
        stack, name = cluster, "dist_probe"
        stack.ensure_workers(2)
        tmp = tmp_path_factory.mktemp("probe")
        space = space_file(tmp, name, data_uri, epochs=2, samples=3)
        driver = start_driver(stack, name, search_args(stack, space, tmp), tmp)
        try:
            code = wait_driver(driver, 240)
        finally:
            driver.kill()
        assert code == 0, driver.output()[-4000:]
        assert_complete(stack, name, samples=3, epochs=2)
    return SEARCHES


def test_the_mlflow_server_wants_credentials_and_keeps_every_run_in_postgresql(
    stack: Stack, searched: list[str]
) -> None:
    """cluster.yaml's production server: 401 without credentials; the runs are rows of the PostgreSQL store.

    The server was given the database URI without its password (libpq reads PGPASSWORD), and
    there is no SQLite store anywhere: what the searches logged lives in PostgreSQL.
    """
    from mlflow.entities import ViewType

    assert stack.postgres is not None and stack.auth is not None and stack.mlflow.service is not None
    # Every request of every driver and trial process (on nodes given no credentials) logged in.
    server_logs = "".join(log.read_text(errors="replace") for log in stack.root.glob("mlflow-*.log"))
    assert '"POST /api/2.0/mlflow/runs/create HTTP/1.1" 200' in server_logs
    assert not re.findall(r'.*HTTP/1.1" 40[13].*', server_logs), "a request was refused"
    url = f"{stack.mlflow.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert status_of(url) == 401
    assert status_of(url, (stack.auth.user, "not-the-password")) == 401
    assert status_of(url, (stack.auth.user, stack.auth.password)) == 200
    backend = stack.mlflow.service.args[stack.mlflow.service.args.index("--backend-store-uri") + 1]
    assert backend == stack.postgres.uri("mlflow") and stack.postgres.password not in backend
    assert not list(stack.root.rglob("mlflow.db"))
    client = mlflow_client(stack.mlflow.uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments(view_type=ViewType.ALL)}
    assert set(searched) <= set(experiments.values())
    rows = stack.postgres.sql("SELECT experiment_id, count(*) FROM runs GROUP BY experiment_id", "mlflow")
    in_postgres = {str(experiment): count for experiment, count in rows}
    for experiment_id, name in experiments.items():
        if name in searched:
            logged = client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=5000)
            assert in_postgres.get(experiment_id) == len(logged) > 1, (name, in_postgres, len(logged))
    users = stack.postgres.sql("SELECT username, is_admin FROM users", "mlflow_auth")
    assert sorted(users) == sorted([(stack.auth.admin, True), (stack.auth.user, False)])


def _contains(data: bytes, needles: list[bytes]) -> list[bytes]:
    return [n for n in needles if n in data]


def test_no_credential_appears_in_mlflow_s3_logs_or_output(stack: Stack, searched: list[str]) -> None:
    """The fake AWS secret (and key id) planted in every process's environment is nowhere in what the searches left.

    Without ``storage.aws_credentials_out_of_environment`` this fails: Ray Tune copies the driver's
    AWS_* variables into every trial's runtime_env, and each node's runtime-env agent logs them.
    The one expected place of the key id (not the secret) is the S3 server's own access log:
    the presigned URLs MLflow's server hands out for downloads carry it (X-Amz-Credential).
    """
    from mlflow.entities import ViewType

    needles = stack.secrets()  # AWS secret and key id; the MLflow user's, admin's and database's passwords
    not_key_id = [n for n in needles if n != stack.key_id.encode()]
    hits: list[str] = []
    client = mlflow_client(stack.mlflow.uri)
    runs = [
        run
        for exp in client.search_experiments(view_type=ViewType.ALL)
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=5000)
    ]
    assert len(runs) >= 4, "the searches of this module should have left runs"
    for run in runs:
        fields = [*run.data.params.items(), *run.data.tags.items(), *((k, "") for k in run.data.metrics)]
        hits += [f"run {run.info.run_id} {k}" for k, v in fields if _contains(f"{k}={v}".encode(), needles)]
    keys = stack.keys()
    assert any(k.startswith("mlflow/") for k in keys) and any(k.startswith("tune/") for k in keys)
    hits += [f"s3://{stack.bucket}/{k}" for k in keys if _contains(stack.read(k), needles)]
    for log in DRIVER_LOGS:
        hits += [f"{log}: {needle.decode()}" for needle in _contains(log.read_bytes(), needles)]
    scanned = 0
    # Ray session logs of every node, service logs, the PostgreSQL server's log; not the secrets' own files
    logs = [*stack.root.rglob("*"), *([stack.postgres.log] if stack.postgres else [])]
    for path in logs:
        if path.is_file() and not path.is_symlink() and path.name not in ("ray_token", "mlflow-credentials"):
            scanned += 1
            found = _contains(path.read_bytes(), needles if path != stack.s3.service.log else not_key_id)
            hits += [f"{path}: {needle.decode()}" for needle in found]
    assert scanned > 50, "Ray's session logs were not found"
    assert not hits, hits


def test_nothing_talked_to_an_address_off_loopback(stack: Stack, searched: list[str]) -> None:
    """Every socket of every process of the module (services, Ray nodes and workers, drivers) stayed on loopback.

    The watch must have looked: since the stack started it took at least a quarter of the samples
    its interval allows (a round, one read of the socket tables, takes a fraction of it), never
    paused more than 5 s, and it sampled every driver and every node of the module while they lived.
    """
    watch = stack.watch
    running_s = time.monotonic() - watch.began
    TIMINGS.update(
        watch_samples=watch.samples,
        watch_samples_per_s=round(watch.samples / running_s, 2),
        watch_longest_gap_s=round(watch.longest_gap_s, 2),
    )
    assert watch.is_alive() and watch.samples >= running_s / watch.interval / 4, (watch.samples, running_s)
    assert watch.longest_gap_s < 5.0, f"the watch paused {watch.longest_gap_s:.1f}s"
    assert searched and stack.services, "no search ran under the watch"
    unseen = [s.name for s in stack.services if s.proc.pid not in watch.sampled]
    unseen += [name for name, node in stack.ray.nodes.items() if node.proc.pid not in watch.sampled]
    assert not unseen, f"never sampled: {unseen}"
    assert not watch.outside, sorted(watch.outside)
