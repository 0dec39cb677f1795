"""On a cluster (--address), a trial no node could ever hold fails fast; one a node type could hold waits.

A real ``ray start --head`` on a loopback address (no CPUs, like the shipped cluster's head)
and, later, a real worker node; the searches are real ``hemotune search`` processes. The
autoscaler's node types come from ``~/ray_bootstrap_config.yaml`` as ``ray up`` leaves it on
the head node: each driver runs with its own HOME, with or without that file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cluster_stack import CLOSED_PROXY, RayCluster
from helpers import Driver, synthetic_space_file, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RayCluster, dict[str, str]]]:
    """A head node with 0 CPUs on a loopback address, and the environment its clients need."""
    root = Path(tempfile.mkdtemp(prefix="ht-res-", dir="/tmp"))  # short: Ray's unix socket paths
    token = root / "ray_token"
    token.write_text("hemotune-test-token-" + "0" * 40)
    env = {
        **os.environ,
        **CLOSED_PROXY,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cluster = RayCluster(root, env)
    try:
        cluster.start_head()
        yield cluster, env
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _home(tmp_path: Path, node_types: dict | None) -> Path:
    """A HOME for the driver; with ``node_types``, the autoscaling config a `ray up` head has."""
    home = tmp_path / "home"
    home.mkdir()
    if node_types is not None:
        config = {"cluster_name": "t", "head_node_type": "head", "available_node_types": node_types}
        (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(config))
    return home


def _driver(tmp_path: Path, env: dict[str, str], address: str, home: Path, *extra: str) -> Driver:
    path = synthetic_space_file(
        tmp_path,
        name="cluster_fit",
        fixed={"seconds_per_epoch": 0.0},
        budget={"num_samples": 1, "max_concurrent": 1, "epochs": 2, "grace_period": 2},
    )
    args = ["search", str(path), "--address", address, "--results-dir", str(tmp_path / "results"), *extra]
    return Driver(args, tmp_path, {**env, "HOME": str(home)})


def test_no_node_and_no_node_type_could_hold_the_trial_exits_2_at_once(
    head: tuple[RayCluster, dict[str, str]], tmp_path: Path
) -> None:
    cluster, env = head
    home = _home(tmp_path, {"head": {"resources": {"CPU": 0}}, "cpu_small": {"resources": {"CPU": 0.5}}})
    driver = _driver(tmp_path, env, cluster.address, home)
    try:
        start = time.monotonic()
        code = driver.wait(timeout=60)
        elapsed = time.monotonic() - start
    finally:
        driver.cleanup()
    out = driver.output()
    assert code == 2, out[-3000:]
    assert "resources.cpu: a trial asks for 1 CPU + 0 GPU per trial" in out, out[-3000:]
    assert "node type cpu_small (0.5 CPU, ? GPU)" in out and cluster.ip["head"] in out
    assert elapsed < 30, f"{elapsed:.1f}s"  # joining the cluster included; nothing waited for


def test_a_node_type_that_could_hold_it_is_waited_for_until_the_timeout(
    head: tuple[RayCluster, dict[str, str]], tmp_path: Path
) -> None:
    cluster, env = head
    home = _home(tmp_path, {"head": {"resources": {"CPU": 0}}, "cpu4": {"resources": {"CPU": 4}}})
    driver = _driver(tmp_path, env, cluster.address, home, "--resource-timeout", "3")
    try:
        code = driver.wait(timeout=90)
    finally:
        driver.cleanup()
    out = driver.output()
    assert code == 2, out[-3000:]
    assert "waiting for a node with 1 CPU + 0 GPU per trial (the autoscaler may start node type cpu4" in out
    assert "no node with 1 CPU + 0 GPU per trial joined the cluster within 3 s (--resource-timeout)" in out


def test_the_search_runs_once_a_node_that_holds_the_trial_joins(
    head: tuple[RayCluster, dict[str, str]], tmp_path: Path
) -> None:
    """No autoscaling config (the driver is not on a `ray up` head): --resource-timeout says to wait."""
    cluster, env = head
    driver = _driver(tmp_path, env, cluster.address, _home(tmp_path, None), "--resource-timeout", "120")
    try:
        assert wait_until(lambda: "waiting for a node" in driver.output(), 60, 0.5, driver), driver.output()
        cluster.add_workers({"worker1": {}}, num_cpus=1)
        code = driver.wait(timeout=180)
    finally:
        driver.cleanup()
    out = driver.output()
    assert code == 0, out[-3000:]
    assert "(--resource-timeout was given; live nodes:" in out and "joined after" in out
    assert "trials ranked by val/score" in out and "completed" in out
