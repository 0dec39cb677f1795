"""A real ``mlflow server --app-name basic-auth`` on loopback: refused without credentials, used with them.

The server (SQLite store, one worker) is started by PID for the module and ended by PID.
Its admin is bootstrapped from environment variables; the searches log in as a
``hemotune`` user from a 0600 credentials file (``HEMOTUNE_MLFLOW_CREDENTIALS``). The
multi-node version of this (trials on other Ray nodes, PostgreSQL behind the server)
is tests/cluster_tests/test_cluster.py, whose stack runs the same server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_stack import CLOSED_PROXY, MlflowServer
from helpers import mlflow_client, search_tree, synthetic_space_file
from mlflow_services import BasicAuth, status_of

pytestmark = [pytest.mark.slow, pytest.mark.auth]

CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "HEMOTUNE_MLFLOW_CREDENTIALS")


@pytest.fixture(scope="module")
def server() -> Iterator[MlflowServer]:
    root = Path(tempfile.mkdtemp(prefix="ht-auth-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(CLOSED_PROXY, MLFLOW_DISABLE_TELEMETRY="true")
    mlflow = MlflowServer(root, env, str(root / "artifacts"), auth=BasicAuth(root))
    try:
        mlflow.wait_healthy()
        yield mlflow
    finally:
        mlflow.stop()
        shutil.rmtree(root, ignore_errors=True)


def search(
    server: MlflowServer, tmp: Path, name: str, extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``hemotune search`` of 2 synthetic trials x 2 epochs against the server, Ray's files under ``tmp``."""
    space = synthetic_space_file(
        tmp, name=name, budget={"num_samples": 2, "max_concurrent": 2, "epochs": 2, "grace_period": 2}
    )
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(CLOSED_PROXY, RAY_TMPDIR=str(tmp / "raytmp"), **extra_env)
    command = [sys.executable, "-m", "hemotune", "search", str(space), "--tracking-uri", server.uri]
    command += ["--results-dir", str(tmp / "results"), "--num-cpus", "2", "--no-progress"]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


def short_tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="ht-a-", dir="/tmp"))  # Ray's socket paths must stay short


def test_a_request_without_credentials_is_refused_with_401(server: MlflowServer) -> None:
    auth = server.auth
    assert auth is not None
    url = f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert status_of(url) == 401
    assert status_of(url, (auth.user, "wrong-password")) == 401
    assert status_of(url, (auth.user, auth.password)) == 200
    assert status_of(f"{server.uri}/health") == 200  # the only thing open to anyone


def test_missing_or_wrong_credentials_make_search_exit_2_before_ray_starts(
    server: MlflowServer, tmp_path: Path
) -> None:
    auth = server.auth
    assert auth is not None
    tmp = short_tmp()
    try:
        began = time.time()
        missing = search(server, tmp, "auth_missing", {})
        assert missing.returncode == 2, missing.stdout + missing.stderr
        assert f"the MLflow server at {server.uri} requires credentials (HTTP 401)" in missing.stderr
        assert (
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or HEMOTUNE_MLFLOW_CREDENTIALS="
            in (missing.stderr)
        )

        wrong = tmp_path / "wrong-credentials"
        wrong.write_text(
            "[mlflow]\nmlflow_tracking_username = hemotune\nmlflow_tracking_password = nope-FAKE\n"
        )
        wrong.chmod(0o600)
        rejected = search(server, tmp, "auth_wrong", {"HEMOTUNE_MLFLOW_CREDENTIALS": str(wrong)})
        assert rejected.returncode == 2, rejected.stdout + rejected.stderr
        assert (
            f"rejected user 'hemotune' (HTTP 401): check the password in HEMOTUNE_MLFLOW_CREDENTIALS={wrong}"
            in (rejected.stderr)
        )
        assert "nope-FAKE" not in rejected.stdout + rejected.stderr

        variables = {"MLFLOW_TRACKING_USERNAME": "hemotune", "MLFLOW_TRACKING_PASSWORD": "nope-FAKE"}
        by_env = search(server, tmp, "auth_wrong_env", variables)
        assert (
            by_env.returncode == 2
            and "check the password in MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD" in (by_env.stderr)
        ), by_env.stderr
        for proc in (missing, rejected, by_env):  # refused before the data was prepared and before Ray
            assert "data:" not in proc.stdout and "ray tune:" not in proc.stdout, proc.stdout
        assert not (tmp / "raytmp").exists(), "a Ray session was started"
        assert time.time() - began < 60
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_search_logs_in_from_a_0600_file_and_the_password_is_nowhere(
    server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Driver and trial processes authenticate (no 401 meanwhile); the password is in no run, artifact or log."""
    auth = server.auth
    assert auth is not None
    tmp = short_tmp()
    try:
        log_start = len(server.service.own_output()) if server.service else 0
        proc = search(server, tmp, "auth_search", auth.client_env())
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert server.service is not None
        requests = server.service.own_output()[log_start:]
        assert re.search(r'"POST /api/2.0/mlflow/runs/create HTTP/1.1" 200', requests)
        assert not re.search(r'HTTP/1.1" 40[13]', requests), "a request of the search was refused"

        for name, value in auth.user_env().items():
            monkeypatch.setenv(name, value)
        parent, children = search_tree(server.uri, "auth_search")
        assert parent.info.status == "FINISHED" and len(children) == 2
        client = mlflow_client(server.uri)
        for run in children:  # logged by the trial processes themselves, live: placement tags, every epoch
            assert run.info.status == "FINISHED" and "hemotune.node_ip" in run.data.tags
            assert sorted(int(m.step) for m in client.get_metric_history(run.info.run_id, "epoch")) == [1, 2]

        needles = auth.secrets()
        hits = []
        for run in [parent, *children]:
            fields = {**run.data.params, **run.data.tags}
            hits += [
                f"run {run.info.run_name} {k}"
                for k, v in fields.items()
                if any(n.decode() in v for n in needles)
            ]
            artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
            files = [p for p in artifacts.rglob("*") if p.is_file()]
            assert files or run is not parent
            hits += [str(p) for p in files if any(n in p.read_bytes() for n in needles)]
        hits += [f"driver output: {n!r}" for n in needles if n.decode() in proc.stdout + proc.stderr]
        scanned = [
            p for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()
        ]  # Ray's logs, Tune's results
        assert any("raylet" in p.name for p in scanned), "Ray's session logs were not found"
        hits += [str(p) for p in scanned if any(n in p.read_bytes() for n in needles)]
        hits += ["server log"] if any(n.decode() in server.service.own_output() for n in needles) else []
        assert not hits, hits
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
