"""The basic-auth MLflow server's login cache: request time with and without ``auth_cache_ttl_seconds``.

    python benchmarks/mlflow_auth/run.py [--requests 40] [--smoke] [--out benchmarks/results]

MLflow's basic-auth app checks the password of every request with scrypt unless it keeps
a successful login (``auth_cache_ttl_seconds``, off by default); the cluster's server
(``cluster/mlflow_server_env.py``) and the test servers turn that cache on. This starts two
real ``mlflow server --app-name basic-auth`` processes on loopback (one worker each, SQLite
stores), identical but for the cache (0 s and 60 s), creates the same user on both, and times
``requests`` authenticated reads alternately on one and the other (side by side, because these
machines are noisy). It also checks that the cache never admits a wrong password: every
request with one gets 401 on both servers. Writes ``benchmarks/results/mlflow_auth.json``.
The servers are ended by PID.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # tests/cluster_stack.py's servers
from benchmarks import common

#: The cache's effect is a ratio of request times: cached / uncached.
RATIO_TARGET = 0.5
WRONG_PASSWORD_TRIES = 3
READ = "api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


def start_server(root: Path, ttl_s: int) -> tuple[Any, Any]:
    """A basic-auth MLflow server (starting) whose login cache keeps a login ``ttl_s`` seconds (0: off)."""
    from cluster_stack import MlflowServer
    from mlflow_services import BasicAuth

    from hemotune.offline import offline_env

    root.mkdir(parents=True)
    auth = BasicAuth(root)
    config = auth.config.read_text()
    auth.config.write_text(
        "\n".join(
            f"auth_cache_ttl_seconds = {ttl_s}" if line.startswith("auth_cache_ttl_seconds") else line
            for line in config.splitlines()
        )
        + "\n"
    )
    env = {**os.environ, **offline_env()}
    return MlflowServer(root, env, str(root / "artifacts"), auth=auth), auth  # started, not yet healthy


def timed_request(url: str, auth: tuple[str, str]) -> tuple[float, int]:
    from mlflow_services import _request

    began = time.perf_counter()
    status, _ = _request(url, auth)
    return time.perf_counter() - began, status


def measure(requests: int, root: Path) -> dict[str, Any]:
    servers: dict[str, tuple[Any, Any]] = {}
    try:
        for label, ttl in (("no_cache", 0), ("cache_60s", 60)):
            servers[label] = start_server(root / label, ttl)
        for server, _ in servers.values():  # both start at once; then each gets its user, as the admin
            server.wait_healthy()
        times: dict[str, list[float]] = {label: [] for label in servers}
        refused: dict[str, list[int]] = {label: [] for label in servers}
        for server, auth in servers.values():  # one warm-up request each (imports, first login)
            timed_request(f"{server.uri}/{READ}", (auth.user, auth.password))
        for _ in range(requests):
            for label, (server, auth) in servers.items():
                seconds, status = timed_request(f"{server.uri}/{READ}", (auth.user, auth.password))
                assert status == 200, f"{label}: authenticated read answered {status}"
                times[label].append(seconds)
        for label, (server, auth) in servers.items():
            for _ in range(WRONG_PASSWORD_TRIES):
                refused[label].append(timed_request(f"{server.uri}/{READ}", (auth.user, "wrong"))[1])
    finally:
        for server, _ in servers.values():
            server.stop()
    return {
        label: {
            "requests": len(times[label]),
            "median_s": round(statistics.median(times[label]), 4),
            "mean_s": round(statistics.fmean(times[label]), 4),
            "max_s": round(max(times[label]), 4),
            "wrong_password_statuses": refused[label],
        }
        for label in times
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.add_common_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("--requests", type=int, default=40, help="authenticated reads per server")
    args = parser.parse_args(argv)
    requests = 3 if args.smoke else args.requests
    with tempfile.TemporaryDirectory(prefix="hemotune-auth-bench-") as tmp:
        figures = measure(requests, Path(tmp))
    ratio = figures["cache_60s"]["median_s"] / figures["no_cache"]["median_s"]
    refusals = [s for f in figures.values() for s in f["wrong_password_statuses"]]
    targets = [
        common.target("median request time, login cache / no cache", ratio, RATIO_TARGET),
        common.target(
            "wrong-password requests refused (401), share",
            sum(s == 401 for s in refusals) / len(refusals),
            1.0,
            higher_is_better=True,
        ),
    ]
    for label, f in figures.items():
        print(f"{label}: median {f['median_s']:.3f} s, mean {f['mean_s']:.3f} s over {f['requests']} reads")
    common.publish(
        "mlflow_auth",
        {"servers": figures, "ratio_cached_over_uncached": round(ratio, 4)},
        out=args.out,
        smoke=args.smoke,
        targets=targets,
        settings={"requests": requests, "request": READ, "workers_per_server": 1, "order": "alternating"},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
