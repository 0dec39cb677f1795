"""Wall time, peak memory and best objective of the shipped ``--preset smoke`` searches, through the CLI.

    python benchmarks/smoke_searches/run.py [--searches NAME ...] [--warm] [--data-root DIR] [--out DIR]
    python benchmarks/smoke_searches/run.py --smoke --searches all_leukemia --out /tmp/x   # --preset plumbing

Each search runs as a user runs it (``hemotune search NAME --preset smoke --data ...``: a local Ray
started by the command, the embedded SQLite MLflow store) in a fresh results folder and a fresh data
cache; ``--warm`` runs it once more on the warm cache. Memory is the peak of the summed RSS of the CLI
process and all its descendants (Ray's processes and the trials). The best objective is the one the
command prints (``best: trial ..., METRIC = VALUE``). Targets: each smoke search takes at most 5
minutes on the machine of the README's first command (2 CPU cores) and learns (best objective > 0:
the quick start used to end with every trial at mAP 0). ``--smoke`` runs the ``plumbing`` presets
instead (seconds; figures mean nothing). Writes ``benchmarks/results/smoke_searches.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common

SEARCHES = {"bcd_loss_weights": "bccd", "pbc_class_weights": "pbc8", "all_leukemia": "all_leukemia"}
WALL_TARGET_S = 300.0
BEST = re.compile(r"^best: trial (\S+), (\S+) = (-?[0-9.]+(?:e-?\d+)?) at epoch (\d+)")


def run_once(name: str, data: Path, work: Path, cache: Path, preset: str) -> dict[str, Any]:
    """One ``hemotune search`` command: exit code, wall, peak RSS and the best trial it printed."""
    from hemotune.offline import offline_env

    env = {**os.environ, **offline_env(), "HEMOTUNE_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hemotune", "search", name, "--preset", preset, "--data", str(data)]
    cmd += ["--results-dir", str(work / "results"), "--no-progress"]
    res = common.timed_command(cmd, env=env, cwd=work, timeout=1800)
    best = next((m for _, line in res["lines"] if (m := BEST.match(line.strip()))), None)
    return {
        "exit_code": res["exit_code"],
        "wall_s": round(res["wall_s"], 1),
        "peak_rss_gib": round(res["peak_rss_gib"], 2),
        "best_metric": best.group(2) if best else None,
        "best_value": float(best.group(3)) if best else None,
        "best_epoch": int(best.group(4)) if best else None,
        "tail": [line for _, line in res["lines"][-3:]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.add_data_root_arg(
        common.add_common_args(
            argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        )
    )
    parser.add_argument("--searches", nargs="+", choices=sorted(SEARCHES), default=list(SEARCHES))
    parser.add_argument(
        "--warm", action="store_true", help="run each search once more on the warm data cache"
    )
    args = parser.parse_args(argv)
    preset = "plumbing" if args.smoke else "smoke"
    rows, targets = [], []
    with tempfile.TemporaryDirectory(prefix="hemotune-smoke-bench-") as tmp:
        for name in args.searches:
            cache = Path(tmp) / f"cache-{name}"
            for state in ("cold", "warm") if args.warm else ("cold",):
                work = Path(tmp) / f"{name}-{state}"
                work.mkdir()
                row = {"search": name, "preset": preset, "cache": state}
                row.update(run_once(name, args.data_root / SEARCHES[name], work, cache, preset))
                rows.append(row)
                print(
                    f"{name} ({state} cache): exit {row['exit_code']}, {row['wall_s']} s, "
                    f"{row['peak_rss_gib']} GiB, best {row['best_metric']} = {row['best_value']}",
                    flush=True,
                )
                if row["exit_code"] != 0:
                    print("\n".join(row["tail"]), file=sys.stderr)
            first = next(r for r in rows if r["search"] == name)
            targets.append(common.target(f"{name} wall time", first["wall_s"], WALL_TARGET_S, unit="s"))
            if not args.smoke:  # the plumbing presets are not meant to learn
                targets.append(
                    common.target(
                        f"{name} best objective", first["best_value"], 0.0, higher_is_better=True, strict=True
                    )
                )
    common.publish(
        "smoke_searches",
        {"runs": rows},
        out=args.out,
        smoke=args.smoke,
        targets=targets,
        settings={"preset": preset, "searches": args.searches, "warm": args.warm},
    )
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
