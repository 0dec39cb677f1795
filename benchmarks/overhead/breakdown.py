"""Where the hemotune command's fixed cost goes: its time-stamped output, and each part measured alone.

``measure`` times, each in a fresh interpreter (as the command pays them), the parts
a one-trial search adds to the training: Python start-up, ``import hemotune.cli``,
the imports of Ray Tune, Optuna and MLflow, a local ``ray.init`` + ``ray.shutdown``,
MLflow's SQLite store set-up (a new ``mlflow.db``, an experiment, a parent and a
child run, a batch of metrics), and the warm data preparation (a cache hit).
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Output lines of ``hemotune search`` that end a phase of the driver (first match wins).
PHASE_MARKERS = {
    "data_prepared": r"^data: ",
    "mlflow_opened": r"^mlflow: ",
    "search_described": r"^search: ",
    "ranking_printed": r"[┏┃]|^\s*rank\b",
    "report_written": r"^report: ",
}


_SNIPPETS = {
    "python_startup": "pass",
    "import_hemotune_cli": "import hemotune.cli",
    "import_ray_tune": "import ray; from ray import tune",
    "import_optuna": "import optuna",
    "import_mlflow": "import mlflow",
    "ray_init_shutdown": (
        "import ray, time; t = time.perf_counter();"
        " ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False);"
        " ray.shutdown(); print('T', time.perf_counter() - t)"
    ),
    "mlflow_sqlite_setup": (
        "import mlflow, sys, time; from mlflow import MlflowClient; t = time.perf_counter();"
        " c = MlflowClient(tracking_uri='sqlite:///' + sys.argv[1] + '/mlflow.db');"
        " e = c.create_experiment('x', artifact_location=sys.argv[1] + '/artifacts');"
        " p = c.create_run(e); r = c.create_run(e, tags={'mlflow.parentRunId': p.info.run_id});"
        " from mlflow.entities import Metric;"
        " c.log_batch(r.info.run_id, metrics=[Metric('m', 1.0, 0, 1)]);"
        " c.set_terminated(r.info.run_id); c.set_terminated(p.info.run_id);"
        " print('T', time.perf_counter() - t)"
    ),
}


def first_epoch_time(results: Path) -> float | None:
    """Wall-clock time (s) the trial logged its first epoch to MLflow (millisecond stamps), or None."""
    dbs = sorted(results.rglob("mlflow.db"))
    if not dbs:
        return None
    with sqlite3.connect(dbs[0]) as db:
        row = db.execute("SELECT MIN(timestamp) FROM metrics WHERE key = 'epoch'").fetchone()
    return row[0] / 1000.0 if row and row[0] else None


def phases(lines: list[list[Any]], wall: float, trial_start: float, trial_s: float) -> dict[str, float]:
    """The command's wall time cut into phases (seconds), from its output and the trial's own clock.

    ``trial_start`` is when the trial's trainable started (seconds since the command
    started: its first epoch's MLflow stamp minus that epoch's ``time_total_s``), and
    ``trial_s`` its last ``time_total_s``.
    """
    seen: dict[str, float] = {}
    for name, pattern in PHASE_MARKERS.items():
        for t, line in lines:
            if re.search(pattern, line):
                seen[name] = float(t)
                break
    data = seen.get("data_prepared", 0.0)
    mlflow = seen.get("mlflow_opened", data)
    trial_end = trial_start + trial_s
    return {
        "start_imports_validate_prepare_s": round(data, 3),
        "mlflow_setup_s": round(mlflow - data, 3),
        "ray_start_and_trial_launch_s": round(trial_start - mlflow, 3),
        "trial_s": round(trial_s, 3),
        "end_of_search_s": round(wall - trial_end, 3),
        "markers_s": seen,
    }


def _run(code: str, env: Mapping[str, str], cwd: Path) -> float:
    """Wall seconds of ``python -c code`` (or the ``T <seconds>`` it prints for its own timed part)."""
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(cwd)], env=dict(env), cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {proc.stderr[-2000:]}")
    stamped = [line for line in proc.stdout.splitlines() if line.startswith("T ")]
    return float(stamped[-1].split()[1]) if stamped else wall


def measure(root: Path, env: Mapping[str, str], repeats: int = 2) -> dict[str, float]:
    """The median over ``repeats`` of each part, in seconds (imports net of bare Python start-up)."""
    from hemotune.offline import CLOSED_LOOPBACK_PROXY, LOOPBACK_HOSTS

    proxy = CLOSED_LOOPBACK_PROXY  # as hemotune routes Ray's HTTP: no metadata probes leave the machine
    env = {**env, "http_proxy": proxy, "https_proxy": proxy, "no_proxy": LOOPBACK_HOSTS}
    parts: dict[str, float] = {}
    for name, code in _SNIPPETS.items():
        times = []
        for i in range(repeats):
            folder = root / "breakdown" / f"{name}-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            times.append(_run(code, env, folder))
        parts[name] = round(statistics.median(times), 3)
    for name in ("import_hemotune_cli", "import_ray_tune", "import_optuna", "import_mlflow"):
        parts[name] = round(parts[name] - parts["python_startup"], 3)
    return parts


if __name__ == "__main__":  # python benchmarks/overhead/breakdown.py: the parts on their own
    import os
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from hemotune.offline import offline_env

    print(json.dumps(measure(Path(tempfile.mkdtemp()), {**os.environ, **offline_env()}), indent=2))
