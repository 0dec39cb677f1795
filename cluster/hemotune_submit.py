#!/usr/bin/env python
"""Entry script for ``ray submit cluster/cluster.yaml cluster/hemotune_submit.py -- SPACE [options]``.

``ray submit`` copies this file to the head node and runs it there. It joins the
running cluster, points hemotune at the head's MLflow server and the S3 results
prefix, and runs ``hemotune search SPACE [options]`` (or ``hemotune sync SEARCH``
when the first argument is ``sync``). Options given explicitly win over the
defaults below.

Settings, from the environment or else from ``~/hemotune-cluster.env`` (written
by the head's setup commands in cluster.yaml):

* ``HEMOTUNE_RESULTS_DIR``: ``s3://bucket/prefix`` for Ray Tune's experiments (required:
  a multi-node search needs storage every node can reach).
* ``HEMOTUNE_TRACKING_URI``: the MLflow server (default ``http://<head IP>:5000``; the
  head's private address, because trials on worker nodes log to it too).
* ``RAY_ADDRESS``: the cluster to join (default ``auto``: the cluster on this node).

* ``HEMOTUNE_MLFLOW_CREDENTIALS``: the 0600 file with the MLflow server's user and password
  (``~/.hemotune/mlflow-credentials``, written on every node by cluster.yaml); hemotune
  reads it, and hands trials its path, never the password.

No AWS credentials are read or passed here: every node uses its own AWS credential
chain (on EC2, the instance profile).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ENV_FILE = Path("~/hemotune-cluster.env").expanduser()
MLFLOW_PORT = 5000


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` and quotes allowed; ``#`` comments ignored)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def head_ip() -> str:
    """This node's address as Ray sees it (the head's private IP on a ``ray up`` cluster)."""
    import ray.util

    return str(ray.util.get_node_ip_address())


def _has(args: Sequence[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def build_argv(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The ``hemotune`` command line for ``ray submit ... -- argv``."""
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(__doc__)
    command, rest = ("sync", list(argv[1:])) if argv[0] == "sync" else ("search", list(argv))
    results_dir = env.get("HEMOTUNE_RESULTS_DIR")
    if not _has(rest, "--results-dir"):
        if not results_dir:
            raise SystemExit(
                "hemotune_submit: set HEMOTUNE_RESULTS_DIR=s3://bucket/prefix (in ~/hemotune-cluster.env) "
                "or pass --results-dir: every node must reach the experiment storage"
            )
        rest += ["--results-dir", results_dir]
    if not _has(rest, "--tracking-uri"):
        rest += ["--tracking-uri", env.get("HEMOTUNE_TRACKING_URI") or f"http://{head_ip()}:{MLFLOW_PORT}"]
    if command == "search":
        if not _has(rest, "--address"):
            rest += ["--address", env.get("RAY_ADDRESS") or "auto"]
        if not _has(rest, "--no-progress") and not sys.stdout.isatty():
            rest.append("--no-progress")  # ray submit's output is a log, not a terminal
    return [command, *rest]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    env = {**read_env_file(ENV_FILE), **os.environ}
    keys = ("HEMOTUNE_RESULTS_DIR", "HEMOTUNE_TRACKING_URI", "HEMOTUNE_MLFLOW_CREDENTIALS")
    for key in (*keys, "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        if key in env:
            os.environ.setdefault(key, env[key])
    command = build_argv(args, env)
    print("hemotune " + " ".join(command), flush=True)
    from hemotune.cli import main as hemotune_main

    return hemotune_main(command)


if __name__ == "__main__":
    sys.exit(main())
