"""The seeded chaos run as a benchmark: runs ``tests/cluster_tests/test_chaos.py`` and keeps its figures.

    python benchmarks/chaos/run.py [--seed N] [--out benchmarks/results]

The test itself is the benchmark (one code path, ``tests/chaos_schedule.py``): a
40-trial synthetic search on a loopback 3-node Ray cluster with an MLflow server
(PostgreSQL store, basic auth) and S3 (moto), while a seeded schedule kills a worker
node twice, four trial processes, the MLflow server (20 s) and the driver once. This
script runs it under the heavy-run lock with ``HEMOTUNE_CHAOS_JSON`` set, then writes
``benchmarks/results/chaos.json``: the test's figures (kills survived by kind, trials
lost, epochs redone, durations) in the common envelope, with the targets "0 trials
lost" and "test wall time <= 240 s". ``--smoke`` is not offered: the run is the check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common

TEST = "tests/cluster_tests/test_chaos.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, help="the schedule's seed (default: a random one, printed)")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="results folder")
    parser.add_argument(
        "--figures", type=Path, help="do not run: wrap the figures an earlier HEMOTUNE_CHAOS_JSON run wrote"
    )
    args = parser.parse_args(argv)
    if args.figures is not None:
        return _write(json.loads(args.figures.read_text()), None, None, args)
    with tempfile.TemporaryDirectory() as tmp:
        figures_file = Path(tmp) / "chaos.json"
        env = {**os.environ, "HEMOTUNE_CHAOS_JSON": str(figures_file)}
        if args.seed is not None:
            env["HEMOTUNE_CHAOS_SEED"] = str(args.seed)
        command = [
            "flock",
            common.HEAVY_LOCK,
            sys.executable,
            "-m",
            "pytest",
            TEST,
            "-m",
            "chaos",
            "-s",
            "-p",
            "no:cacheprovider",
        ]
        began = time.time()
        code = subprocess.call(command, cwd=common.REPO, env=env)
        wall = time.time() - began
        figures = json.loads(figures_file.read_text()) if figures_file.exists() else {}
    return _write(figures, code, wall, args)


def _write(figures: dict, code: int | None, wall: float | None, args: argparse.Namespace) -> int:
    """``chaos.json``: the figures in the common envelope, with the two targets."""
    targets = [
        common.target("trials_lost", figures.get("trials_lost"), 0, unit="trials"),
        common.target("test_wall_time", figures.get("test_s"), 240, unit="s"),
    ]
    common.publish(
        "chaos",
        {
            "pytest_exit_code": code,
            "wall_s_with_lock_wait": None if wall is None else round(wall, 1),
            "figures": figures,
        },
        out=args.out,
        targets=targets,
        settings={"test": TEST, "seed": figures.get("seed", args.seed)},
    )
    return 0 if code is None else code


if __name__ == "__main__":
    raise SystemExit(main())
