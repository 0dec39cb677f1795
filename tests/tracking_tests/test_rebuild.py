"""Head-node loss, MLflow half: the search's tree rebuilt by ``hemotune sync`` on a new, empty server.

A synthetic search (3 trials x 3 epochs) logs to a real ``mlflow server`` A. A is
then killed by PID and its store and artifacts deleted, as when the head node is
lost. ``hemotune sync SEARCH --tracking-uri B`` against a new, empty server B must
rebuild the experiment, the parent (same search tags, params and artifacts), one
child per trial with every epoch of every metric of Tune's ``result.json``, the
artifacts a Tune trial folder still holds, and the best-trial tags Tune's results
give; the state file then names the new tree, and a second sync adds nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_stack import CLOSED_PROXY, MlflowServer
from helpers import mlflow_client, search_tree, synthetic_space_file

from hemotune.metrics import finite_metrics
from hemotune.results import epoch_metrics, rank_trials, read_trials
from hemotune.tuning import state as search_state

pytestmark = [pytest.mark.slow, pytest.mark.head_loss]

NAME = "synthetic_rebuild"
#: Tags that name the lost tree or this execution's moments, so differ by construction.
DIFFERENT_BY_DESIGN = {"hemotune.best_run_id", "hemotune.rebuilt_from", "hemotune.rebuilt_at"}


def server(root: Path) -> MlflowServer:
    root.mkdir(parents=True)
    env = {**os.environ, **CLOSED_PROXY, "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow = MlflowServer(root, env, str(root / "artifacts"))
    mlflow.wait_healthy()
    return mlflow


def hemotune(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **CLOSED_PROXY, "RAY_TMPDIR": str(tmp / "raytmp")}
    command = [sys.executable, "-m", "hemotune", *args, "--results-dir", str(tmp / "results")]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


def artifact_paths(client, run_id: str, path: str = "") -> set[str]:
    """Every file under a run's artifact root (recursively)."""
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path or None):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ht-hl-", dir="/tmp"))  # Ray's socket paths must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sync_rebuilds_the_whole_tree_on_a_new_empty_server(tmp: Path) -> None:
    space_file = synthetic_space_file(
        tmp, name=NAME, budget={"num_samples": 3, "max_concurrent": 2, "epochs": 3, "grace_period": 3}
    )
    lost = server(tmp / "server-a")
    try:
        done = hemotune(
            tmp, "search", str(space_file), "--tracking-uri", lost.uri, "--num-cpus", "2", "--no-progress"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        client_a = mlflow_client(lost.uri)
        parent_a, children_a = search_tree(lost.uri, NAME)
        parent_files_a = artifact_paths(client_a, parent_a.info.run_id)
        params_a = {c.data.tags["hemotune.trial_id"]: c.data.params for c in children_a}
    finally:
        lost.stop()  # the head node is gone: its MLflow server and its store with it
    shutil.rmtree(tmp / "server-a")
    assert len(children_a) == 3

    new = server(tmp / "server-b")
    try:
        synced = hemotune(tmp, "sync", NAME, "--tracking-uri", new.uri)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "rebuilt the MLflow tree" in synced.stdout, synced.stdout
        print(synced.stdout)  # docs/distributed.md quotes it
        client = mlflow_client(new.uri)
        parent, children = search_tree(new.uri, NAME)
        space, experiment_path = search_state.load_resumable_space(str(tmp / "results"), NAME)
        records = read_trials(experiment_path, space)
        runs = {c.data.tags["hemotune.trial_id"]: c for c in children}

        # the parent: same search tags and params, every artifact the original had, closed
        tags_a = {k: v for k, v in parent_a.data.tags.items() if k.startswith("hemotune.")}
        for key in set(tags_a) - DIFFERENT_BY_DESIGN:
            assert parent.data.tags.get(key) == tags_a[key], key
        assert parent.data.params == parent_a.data.params
        assert parent.info.status == "FINISHED"
        assert parent_files_a <= artifact_paths(client, parent.info.run_id)
        assert {"ranking.md", "report.html", "config/search_space.yaml"} <= parent_files_a
        assert parent.data.tags["hemotune.rebuilt_from"] == (
            f"{lost.uri} experiment {parent_a.info.experiment_id} run {parent_a.info.run_id}"
        )
        ranking = rank_trials(records, space, {t: r.info.run_id for t, r in runs.items()})
        assert parent.data.tags["hemotune.best_trial_id"] == ranking[0].trial_id
        assert parent.data.tags["hemotune.best_run_id"] == runs[ranking[0].trial_id].info.run_id
        assert parent.data.metrics["best/val/score"] == pytest.approx(ranking[0].best_value)

        # one child per trial, every epoch of every metric as Tune recorded it, the same params
        assert sorted(runs) == sorted(r.trial_id for r in records) and len(children) == len(records)
        for record in records:
            run = runs[record.trial_id]
            assert run.info.status == "FINISHED", record.trial_id
            assert run.data.params == params_a[record.trial_id]
            rows = [finite_metrics(epoch_metrics(row)) for row in record.history]
            assert len(rows) == 3
            for key in rows[0]:
                logged = {int(m.step): m.value for m in client.get_metric_history(run.info.run_id, key)}
                assert logged == {int(row["epoch"]): pytest.approx(float(row[key])) for row in rows}, key
            files = artifact_paths(client, run.info.run_id)
            assert "config/resolved.yaml" in files
            assert any(f.startswith("checkpoint/checkpoint_") and f.endswith("/state.json") for f in files)
            assert "weights/best.json" in files  # the trial copied it into its Tune folder (durable.py)
        assert not [r for r in client.search_runs([parent.info.experiment_id]) if r.info.status == "RUNNING"]

        # the state file names the new tree (a later --resume logs there)
        state = search_state.read_state(experiment_path) or {}
        assert (state["tracking_uri"], state["parent_run_id"]) == (new.uri, parent.info.run_id)
        assert state["experiment_id"] == parent.info.experiment_id
        assert "mlflow_rebuild_pending" not in state

        # a second sync is a no-op: no new runs, no epochs filled, no rebuild
        before = len(client.search_runs([parent.info.experiment_id]))
        child_files = {t: artifact_paths(client, r.info.run_id) for t, r in runs.items()}
        again = hemotune(tmp, "sync", NAME, "--tracking-uri", new.uri)
        assert again.returncode == 0, again.stdout + again.stderr
        said = " ".join(again.stdout.split())
        assert "0 epochs filled in, 0 runs created" in said and "rebuilt" not in said, said
        assert len(client.search_runs([parent.info.experiment_id])) == before
        assert {t: artifact_paths(client, r.info.run_id) for t, r in runs.items()} == child_files
    finally:
        new.stop()
