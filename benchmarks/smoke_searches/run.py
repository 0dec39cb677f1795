"""Wall time and peak memory of the three shipped smoke searches, run through the CLI.

    python benchmarks/smoke_searches/run.py [--data-root ../shared/datasets] [--out benchmarks/smoke_searches/results.json]

Each search runs in a fresh results folder with a cold and then a warm data cache (the
second run reuses the converted/decoded dataset). Memory is the peak of the summed RSS of
the CLI process and all its descendants (Ray's processes and the trials), sampled every
0.25 s. Appends the machine description so numbers are comparable only like for like.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
SEARCHES = {
    "bcd_loss_weights": "bccd",
    "pbc_class_weights": "pbc8",
    "all_leukemia": "all_leukemia",
}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_once(name: str, data: Path, results: Path, cache: Path) -> dict:
    env = {**os.environ, "HEMOTUNE_CACHE_DIR": str(cache)}
    cmd = [
        sys.executable,
        "-m",
        "hemotune",
        "search",
        name,
        "--preset",
        "smoke",
        "--data",
        str(data),
        "--results-dir",
        str(results),
        "--no-progress",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=results.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(ps))
        time.sleep(0.25)
    output = proc.stdout.read() if proc.stdout else ""
    wall = time.monotonic() - start
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "tail": output.strip().splitlines()[-3:],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="hemotune-bench-cache-"))
    rows = []
    for name, folder in SEARCHES.items():
        for cache_state in ("cold", "warm"):
            results = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "results"
            results.parent.mkdir(parents=True, exist_ok=True)
            row = {
                "search": name,
                "cache": cache_state,
                **run_once(name, Path(args.data_root) / folder, results, cache),
            }
            print(json.dumps(row))
            rows.append(row)
    doc = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "note": "smoke presets: 4 trials x 2 epochs, 2 at a time, CPU only; includes Ray start-up",
        "runs": rows,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
