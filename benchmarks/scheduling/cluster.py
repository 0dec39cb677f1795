"""A Ray cluster of N ``ray start`` nodes on loopback and an ``mlflow server``, for the scaling case.

Reuses the test suite's stack pieces (``tests/cluster_stack.py``): each node is one ``ray start
--block`` with its own loopback address and temp folder, the MLflow server one ``mlflow server
--workers 1`` with a SQLite store; everything is started as a process and ended by PID (its whole
process tree), never by name. The head has no CPUs, so trials run only on the worker nodes; each
worker node has ``cpus_per_node`` CPUs, which with the trials' fractional CPU fixes how many
trials a node runs at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: HTTP of every process routed to a closed loopback port: nothing leaves the machine.
CLOSED_PROXY = {
    **{var: "http://127.0.0.1:9" for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
    "no_proxy": "localhost,127.0.0.1,::1",
    "NO_PROXY": "localhost,127.0.0.1,::1",
}


@dataclass
class Cluster:
    """Where a driver connects: the Ray address, the MLflow URI and the environment both need."""

    address: str
    tracking_uri: str
    env: dict[str, str]
    nodes: int


@contextlib.contextmanager
def cluster(nodes: int, cpus_per_node: int = 1) -> Iterator[Cluster]:
    """A head (no CPUs), ``nodes`` worker nodes and an MLflow server; all stopped by PID on exit."""
    sys.path.insert(0, str(REPO / "tests"))
    from cluster_stack import MlflowServer, RayCluster  # the test suite's own stack pieces

    root = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp"))  # short: Ray's socket paths stay < 108 chars
    (root / "ray_token").write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(root / "ray_token"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **CLOSED_PROXY,
    }
    (root / "artifacts").mkdir()
    mlflow = MlflowServer(root, env, str(root / "artifacts"))
    ray = RayCluster(root / "ray", env)
    try:
        ray.start_head()
        ray.add_workers({f"node{i + 1}": {} for i in range(nodes)}, num_cpus=cpus_per_node)
        mlflow.wait_healthy()
        yield Cluster(address=ray.address, tracking_uri=mlflow.uri, env=env, nodes=nodes)
    finally:
        ray.stop()
        mlflow.stop()
        shutil.rmtree(root, ignore_errors=True)
