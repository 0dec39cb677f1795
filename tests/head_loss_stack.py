"""Losing the head node of a loopback ``cluster_stack.Stack``, and giving it a new one, as a user would.

The head of cluster/cluster.yaml runs Ray's GCS, the search's driver and the MLflow
server with its store (here PostgreSQL, on the head's disk, the worst case: a managed
database off the head would survive). ``lose_head`` SIGKILLs all of them by PID and
deletes what they kept on the head's disk: the database's data folder, the MLflow
server's folder, the head's Ray temp and session folders, the driver's local results
folder and dataset cache. The worker nodes cannot join a new GCS, so they are stopped
too (``ray stop`` on each, by PID here) and a new ``ray start --address NEW`` joins
them to the new head; the S3 bucket is untouched.

``new_head`` starts what a new head brings: a new Ray head on a new address (a new
loopback block), an empty PostgreSQL with the MLflow and auth databases, MLflow's
basic-auth app with the ``hemotune`` user created again, and two new worker nodes.
The pieces replace the stack's own attributes, so ``Stack.stop`` ends them by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
from cluster_stack import MlflowServer, RayCluster, Service, Stack
from mlflow_services import BasicAuth, Postgres


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and every descendant (snapshot first), by PID; reap ``proc``."""
    with contextlib.suppress(psutil.NoSuchProcess):
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        psutil.wait_procs(tree, timeout=15)
    proc.wait(timeout=15)


def lose_head(stack: Stack, driver: Service, driver_local: Path) -> dict[str, float]:
    """SIGKILL the driver, the Ray head, the MLflow server and PostgreSQL; delete the head's state.

    Returns how long each step took (seconds), for the test's report.
    """
    timings: dict[str, float] = {}
    began = time.time()
    driver.kill()  # the driver ran on the head
    stack.ray.kill_node("head")
    assert stack.mlflow.service is not None
    stack.mlflow.service.kill()  # SIGKILL, as a machine dies (stop() would too, but say it)
    stack.mlflow.service = None
    assert stack.postgres is not None and stack.postgres.proc is not None
    kill_tree(stack.postgres.proc)  # the database died with the head: no clean shutdown
    stack.postgres.proc = None
    timings["head_kill_s"] = time.time() - began
    for name in stack.ray.live_workers():  # `ray stop` on each worker: they cannot join a new GCS
        stack.ray.kill_node(name)
    # Everything the head kept on its own disk.
    # (the MLflow server kept no file of its own: runs in PostgreSQL, artifacts proxied to S3)
    for folder in (stack.postgres.root, stack.ray.root / "head", driver_local, stack.driver_cache):
        shutil.rmtree(folder, ignore_errors=True)
    (stack.root / "basic_auth.ini").unlink()
    assert not (stack.ray.root / "head").exists() and not stack.postgres.root.exists()
    timings["head_lost_s"] = time.time() - began
    return timings


def new_head(stack: Stack, workers: int = 2) -> dict[str, float]:
    """A new head (Ray, an empty PostgreSQL, MLflow with basic auth) and ``workers`` new worker nodes."""
    timings: dict[str, float] = {}
    began = time.time()
    old_ray = stack.ray
    stack.ray = RayCluster(stack.root / "ray-new", stack.env)
    old_ray.stop()  # nothing of it runs any more: this releases its loopback block
    stack.postgres = Postgres(("mlflow", "mlflow_auth"))
    timings["postgres_start_s"] = time.time() - began
    root = stack.root / "head-new"
    root.mkdir()
    stack.auth = BasicAuth(root, database_uri=stack.postgres.uri("mlflow_auth"))
    server_env = {**stack.env, **stack.postgres.client_env()}
    stack.mlflow = MlflowServer(
        root, server_env, f"s3://{stack.bucket}/mlflow", backend=stack.postgres.uri("mlflow"), auth=stack.auth
    )
    began = time.time()
    stack.ray.start_head()
    stack.ray.add_workers({f"node{9 + i}": stack.worker_env(f"node{9 + i}") for i in range(workers)})
    timings["ray_start_s"] = time.time() - began
    timings["mlflow_start_s"] = stack.mlflow.wait_healthy()
    os.environ.update(stack.auth.user_env())  # this test process reads the new server as the user
    return timings
