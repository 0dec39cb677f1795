"""Where the first wave of a concurrent search goes: each trial process's timeline, from inside it.

    python benchmarks/scheduling/timeline.py [--trials 8] [--concurrent 8] [--epochs 3] [--smoke]

Runs one scheduling case (``case.py``: sleep trials through ``run_search`` on a private local Ray
with 2 CPUs, the embedded SQLite MLflow store) with a trainer defined in this script (Ray sends it
by value): the synthetic sleep trainer, plus, in every reported epoch, the trial process's start
time, the moment ``train`` was entered, and when each ``report`` was called and returned. From
Tune's ``result.json`` rows it gives, relative to the start of the Tune phase: when each trial
process started, when it reached the trainer, and how long each report blocked (the first one
waits for the trial's MLflow start-up: import, store, child run, sent from a thread while the first
epoch runs). Writes ``benchmarks/results/scheduling_timeline.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common
from hemotune.testing.synthetic import SyntheticCurvesTrainer


class TimelineTrainer(SyntheticCurvesTrainer):
    """The synthetic sleep trainer, stamping each epoch with the trial process's own timeline."""

    name = "timeline_curves"

    def train(self, resolved: Mapping[str, Any], report: Any, context: Any) -> Any:
        import os
        import time

        import psutil

        entry = time.time()
        stamps = {"t_process_start": psutil.Process(os.getpid()).create_time(), "t_train_entry": entry}
        previous = {"returned": entry}

        def timed_report(metrics: Mapping[str, float], **kwargs: Any) -> None:
            called = time.time()
            row = {**metrics, **stamps, "t_report_call": called, "t_previous_return": previous["returned"]}
            report(row, **kwargs)
            previous["returned"] = time.time()

        return super().train(resolved, timed_report, context)


def trial_timelines(results: Path, tune_start: float) -> list[dict[str, Any]]:
    """Per trial (by when it reached the trainer): process start, trainer entry, each report's blocking."""
    out = []
    for path in sorted(results.rglob("result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not rows or "t_train_entry" not in rows[0]:
            continue
        blocked = [
            later["t_previous_return"] - row["t_report_call"] for row, later in itertools.pairwise(rows)
        ]
        out.append(
            {
                "pid": rows[0]["pid"],
                "process_start_s": round(rows[0]["t_process_start"] - tune_start, 2),
                "train_entry_s": round(rows[0]["t_train_entry"] - tune_start, 2),
                "report_blocked_s": [round(b, 2) for b in blocked],
                "last_report_s": round(rows[-1]["t_report_call"] - tune_start, 2),
            }
        )
    return sorted(out, key=lambda t: t["train_entry_s"])


def summarise(trials: list[dict[str, Any]], concurrent: int) -> dict[str, Any]:
    """The first wave (the first ``concurrent`` trials to reach the trainer) in a few numbers."""
    wave = trials[:concurrent]
    first_block = [t["report_blocked_s"][0] for t in wave if t["report_blocked_s"]]
    later_blocks = [b for t in wave for b in t["report_blocked_s"][1:]]
    return {
        "first_wave_trials": len(wave),
        "process_start_s": [min(t["process_start_s"] for t in wave), max(t["process_start_s"] for t in wave)],
        "train_entry_s": [min(t["train_entry_s"] for t in wave), max(t["train_entry_s"] for t in wave)],
        "first_report_blocked_median_s": round(statistics.median(first_block), 2) if first_block else None,
        "later_reports_blocked_median_s": round(statistics.median(later_blocks), 3) if later_blocks else None,
    }


def main(argv: list[str] | None = None) -> int:
    from benchmarks.scheduling import case
    from hemotune.trainers import register_trainer

    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.concurrent, args.epochs = 2, 2, 2
    register_trainer(TimelineTrainer.name, f"{__name__}:TimelineTrainer")
    spec = {"label": "timeline", "trials": args.trials, "epochs": args.epochs, "seconds": 1.0}
    spec.update(concurrent=args.concurrent, cpu=0.25, num_cpus=2, trainer=TimelineTrainer.name)
    with tempfile.TemporaryDirectory(prefix="hs-timeline-", dir="/tmp") as work:
        figures = case.run({**spec, "work": work})
        trials = trial_timelines(Path(work) / "results", figures["tune_start_unix_s"])
    summary = summarise(trials, args.concurrent)
    for t in trials:
        print(
            f"  pid {t['pid']}: process start {t['process_start_s']:6.2f} s, trainer {t['train_entry_s']:6.2f} s,"
            f" reports blocked {t['report_blocked_s']} s"
        )
    print("first wave:", json.dumps(summary))
    common.publish(
        "scheduling_timeline",
        {"summary": summary, "trials": trials, "case": figures},
        out=args.out,
        smoke=args.smoke,
        settings=spec,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
