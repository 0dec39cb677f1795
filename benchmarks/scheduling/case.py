"""One scheduling case, run in its own process: a synthetic sleep search through ``run_search``.

Run as ``python benchmarks/scheduling/case.py SPEC.json OUT.json`` by ``run.py`` (one process per
case, so that the driver's peak memory is this process's own and every case gets a fresh Ray).
The trials sleep ``seconds`` per epoch and use no CPU, so their ideal makespan is known exactly:
``trials * epochs * seconds / concurrent``. Everything above that is scheduling and start-up cost.

Timings come from wall clocks on one machine: the moment Ray is ready (this process), the moment
the search announces its Tune phase (``ray tune: ...``), and MLflow's own millisecond timestamps of
every child run (start, end, every per-epoch metric row).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

#: The per-epoch metrics every synthetic trial logs at step = epoch (the rows that must all be there).
EPOCH_KEYS = ("epoch", "val/score", "train/loss", "val/cost")


def space_doc(spec: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """A synthetic search with no early stopping: every trial runs all its epochs of sleep."""
    return {
        "name": "scheduling_bench",
        "description": "Sleep trials: scheduling and start-up cost only.",
        "trainer": spec.get("trainer", "synthetic_curves"),
        "dataset": {"path": str(data_dir)},
        "objective": {"metric": "val/score", "mode": "max"},
        "fixed": {"best_lr": 0.01, "rate": 0.6, "seconds_per_epoch": spec["seconds"]},
        "parameters": {
            "lr": {"type": "float", "low": 1.0e-5, "high": 1.0, "log": True},
            "plateau": {"type": "float", "low": 0.2, "high": 1.0},
        },
        "search": {"scheduler": "none"},
        "budget": {
            "num_samples": spec["trials"],
            "max_concurrent": spec["concurrent"],
            "epochs": spec["epochs"],
            "grace_period": 1,
            "reduction_factor": 2,
            "max_failures": 0,
        },
        "resources": {"cpu": spec["cpu"]},
        "seed": 7,
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the case's search and measure it."""
    from hemotune.config import RunSettings
    from hemotune.spaces import load_space
    from hemotune.tuning import run_search
    from hemotune.tuning.session import ray_session

    work = Path(spec["work"])
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "README").write_text("synthetic curves need no data\n")
    space_file = work / "space.yaml"
    space_file.write_text(yaml.safe_dump(space_doc(spec, data), sort_keys=False))
    space = load_space(str(space_file))
    settings = RunSettings(
        results_dir=str(work / "results"),
        local_dir=work / "results",
        tracking_uri=spec.get("tracking_uri"),
        address=spec.get("address"),
        num_cpus=spec.get("num_cpus"),
        show_progress=False,
        experiment_name="scheduling",
        mlflow_experiment=f"scheduling-{spec['label']}",
    )
    marks: dict[str, float] = {"began": time.time()}

    def announce(message: str) -> None:
        if message.startswith("ray tune:"):
            marks["tune_start"] = time.time()

    with ray_session(settings, space.resources):
        marks["ray_ready"] = time.time()
        outcome = run_search(space, settings, announce)
    marks["returned"] = time.time()
    figures = measure(spec, outcome.tracking_uri, outcome.parent_run_id, marks)
    figures["driver_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["tune_start_unix_s"] = round(marks["tune_start"], 3)
    return figures


def _child_rows(client: Any, run: Any) -> dict[str, Any]:
    """One child run: its start/end and, per epoch key, the steps logged (>= 1) with timestamps."""
    history = {key: client.get_metric_history(run.info.run_id, key) for key in EPOCH_KEYS}
    epoch_stamps = sorted(m.timestamp for m in history["epoch"] if m.step >= 1)
    return {
        "start_ms": run.info.start_time,
        "end_ms": run.info.end_time,
        "status": run.info.status,
        "rows": sum(len({m.step for m in ms if m.step >= 1}) for ms in history.values()),
        "first_epoch_ms": epoch_stamps[0] if epoch_stamps else None,
    }


def measure(spec: dict[str, Any], tracking_uri: str, parent_run_id: str, marks: dict[str, float]) -> dict:
    """Makespan, overhead, start-up and MLflow completeness, from MLflow's own timestamps."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=10000,
    )
    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda run: _child_rows(client, run), children))
    trials, epochs, seconds, concurrent = spec["trials"], spec["epochs"], spec["seconds"], spec["concurrent"]
    ideal = trials * epochs * seconds / concurrent
    tune_start = marks["tune_start"]
    ends = [r["end_ms"] / 1000 for r in rows if r["end_ms"]]
    tune_phase = (max(ends) if ends else marks["returned"]) - tune_start
    firsts = sorted(r["first_epoch_ms"] / 1000 for r in rows if r["first_epoch_ms"])
    expected_rows = trials * epochs * len(EPOCH_KEYS)
    written = sum(r["rows"] for r in rows)
    return {
        "label": spec["label"],
        "trials": trials,
        "epochs": epochs,
        "seconds_per_epoch": seconds,
        "concurrent": concurrent,
        "cpu_per_trial": spec["cpu"],
        "ideal_s": round(ideal, 2),
        "tune_phase_s": round(tune_phase, 2),
        "overhead": round(tune_phase / ideal - 1, 4),
        "trials_per_hour": round(trials / tune_phase * 3600, 1),
        "ideal_trials_per_hour": round(trials / ideal * 3600, 1),
        # Makespan per concurrent slot, per trial, minus the trial's own sleep: what each trial cost extra.
        "per_trial_overhead_s": round(tune_phase * concurrent / trials - epochs * seconds, 3),
        "steady_trials_per_hour": steady_rate(firsts, concurrent),
        "time_to_first_trial_s": round(firsts[0] - seconds - tune_start, 3) if firsts else None,
        "time_to_first_trial_from_start_s": round(firsts[0] - seconds - marks["began"], 3)
        if firsts
        else None,
        "ray_start_s": round(marks["ray_ready"] - marks["began"], 2),
        "search_wall_s": round(marks["returned"] - marks["began"], 2),
        "after_tune_s": round(marks["returned"] - tune_start - tune_phase, 2),
        "child_runs": len(rows),
        "child_runs_finished": sum(1 for r in rows if r["status"] == "FINISHED"),
        "mlflow_rows_expected": expected_rows,
        "mlflow_rows_written": written,
        "mlflow_rows_complete": written == expected_rows and len(rows) == trials,
        **({"sequential_startup": sequential_startup(rows, seconds, tune_start)} if concurrent == 1 else {}),
    }


def steady_rate(first_epochs: list[float], concurrent: int) -> float | None:
    """Trials per hour once every slot is busy: trial starts after the first wave, per second.

    Between the ``concurrent``-th trial's start and the last one's, ``trials - concurrent`` trials
    started; this leaves out the first wave's start-up (new processes importing the stack at once,
    which on few cores is most of the overhead) and the last wave's tail.
    """
    if len(first_epochs) <= concurrent:
        return None
    window = first_epochs[-1] - first_epochs[concurrent - 1]
    return round((len(first_epochs) - concurrent) / window * 3600, 1) if window > 0 else None


def sequential_startup(rows: list[dict[str, Any]], seconds: float, tune_start: float) -> dict[str, Any]:
    """Trials one after another: the gap from one trial's end to the next one's first epoch beginning.

    That gap is exactly one trial's start-up (scheduling, process or actor, MLflow child run).
    The first trial's start-up is counted from the start of the Tune phase.
    """
    ordered = sorted((r for r in rows if r["first_epoch_ms"]), key=lambda r: r["first_epoch_ms"])
    gaps, previous_end = [], tune_start
    for r in ordered:
        gaps.append(r["first_epoch_ms"] / 1000 - seconds - previous_end)
        previous_end = r["end_ms"] / 1000 if r["end_ms"] else previous_end
    later = gaps[1:]
    return {
        "first_trial_s": round(gaps[0], 3) if gaps else None,
        "later_trials_median_s": round(statistics.median(later), 3) if later else None,
        "later_trials_s": [round(g, 3) for g in later],
    }


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(run(spec), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
