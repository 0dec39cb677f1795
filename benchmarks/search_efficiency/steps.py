"""One step of the search-efficiency benchmark: one search method on one task with one seed.

A step runs in its own process (``run.py --step NAME``, under the heavy-run lock) and
returns its trials in order of completion: each trial's epochs and best objective,
so that the best value found can be plotted against cumulative training epochs.

* hemotune steps run ``hemotune.run_search`` on the shipped space file with the
  benchmark's overrides (``--set`` paths): ``search.sampler``, ``search.scheduler``,
  ``seed``, budget and sizes. The order of completion is each trial's last reported
  epoch's timestamp in Ray Tune's stored results (``hemotune.results.read_trials``).
* the Ultralytics step runs ``YOLO("yolo11n.yaml").tune(...)`` (its genetic
  algorithm, one iteration after the other) on the very data.yaml and training
  arguments a hemotune trial of the first known point gets, searching the same
  parameters where its space can (lr0, nbs = batch x accumulate_steps, box, cls, dfl;
  the optimizer is fixed at SGD, its GA mutates numbers only). Its records come from
  ``tune_results.ndjson``: one line per iteration, in order.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Where each task's data lives under the shared datasets folder.
DATA_FOLDERS = {"bccd": "bccd", "pbc8": "pbc8"}
SPACES = {"bccd": "bcd_loss_weights", "pbc8": "pbc_class_weights"}
#: method -> (sampler, scheduler); "ultralytics" is Ultralytics' own tuner.
HEMOTUNE_METHODS = {
    "tpe_asha": ("tpe", "asha"),
    "random_asha": ("random", "asha"),
    "random_none": ("random", "none"),
}


def hemotune_sets(task: Mapping[str, Any], method: str, seed: int) -> list[str]:
    """The ``--set`` overrides of one hemotune step (on top of the space's smoke preset)."""
    sampler, scheduler = HEMOTUNE_METHODS[method]
    num_samples = task["trials_no_stop"] if scheduler == "none" else task["trials_asha"]
    sets = [
        f"seed={seed}",
        f"search.sampler={sampler}",
        f"search.scheduler={scheduler}",
        f"budget.epochs={task['epochs']}",
        f"budget.num_samples={num_samples}",
        f"budget.max_concurrent={task['concurrent']}",
        f"budget.grace_period={task['grace_period']}",
        f"budget.reduction_factor={task['reduction_factor']}",
        f"points_to_evaluate={json.dumps(task['points_to_evaluate'])}",
        *task["sets"],
    ]
    if sampler == "tpe":  # Optuna's default 10 random start-up trials would make a short TPE search random
        sets.append(f"search.sampler_options={{n_startup_trials: {task['tpe_startup_trials']}}}")
    return sets


def load_task_space(task: Mapping[str, Any], method: str, seed: int, data_root: Path) -> Any:
    """The validated space of one step (for the Ultralytics step: the random_none one, for its data and args)."""
    from hemotune import load_space

    sets = hemotune_sets(task, "random_none" if method == "ultralytics" else method, seed)
    return load_space(
        SPACES[task["task"]],
        preset="smoke",
        sets=sets,
        data=str(data_root / DATA_FOLDERS[task["task"]]),
    )


def run_hemotune_step(task: Mapping[str, Any], method: str, seed: int, data_root: Path) -> dict[str, Any]:
    """Run one hemotune search; its trials in order of completion."""
    from hemotune import RunSettings, run_search
    from hemotune.results import best_row, read_trials

    space = load_task_space(task, method, seed, data_root)
    work = Path(tempfile.mkdtemp(prefix=f"hemotune-bench-{task['task']}-{method}-{seed}-"))
    try:
        settings = RunSettings(
            results_dir=str(work),
            local_dir=work,
            experiment_name=f"{task['task']}-{method}-{seed}",
            show_progress=False,
            num_cpus=task["concurrent"],
        )
        began = time.monotonic()
        outcome = run_search(space, settings)
        wall = time.monotonic() - began
        records = read_trials(outcome.experiment_path, space)
        trials = []
        for record in records:
            rows = [r for r in record.history if isinstance(r.get("timestamp"), (int, float))]
            if not rows:
                continue
            best = best_row(rows, space.objective.metric, space.objective.mode)
            value = best.get(space.objective.metric) if best else None
            trials.append(
                {
                    "trial_id": record.trial_id,
                    "ended_at": max(r["timestamp"] for r in rows),
                    "trained_s": max(float(r.get("time_total_s") or 0.0) for r in rows),
                    "epochs": len(rows),
                    "objective": float(value) if value is not None else 0.0,
                    "outcome": record.outcome,
                    "params": {k: record.config[k] for k in sorted(record.config) if k in _names(space)},
                }
            )
        trials.sort(key=lambda t: (t["ended_at"], t["trained_s"]))  # Tune's timestamps are whole seconds
        start = trials[0]["ended_at"] if trials else 0.0
        for t in trials:
            t["ended_at"] = round(t["ended_at"] - start, 1)
        return {"wall_s": round(wall, 1), "objective": space.objective.metric, "trials": trials}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _names(space: Any) -> set[str]:
    return {p.name for p in space.parameters}


def ultralytics_space(task: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Our searched ranges in Ultralytics' tuner space (min, max); lr0 and nbs as a trial resolves them."""
    scale = int(resolved["batch"]) / float(resolved["reference_batch"])
    low, high = task["base_lr_range"]
    steps = task["accumulate_choices"]
    space: dict[str, tuple[float, float]] = {
        "lr0": (low * scale * min(steps), high * scale * max(steps)),
        "nbs": (int(resolved["batch"]) * min(steps), int(resolved["batch"]) * max(steps)),
    }
    space.update({k: tuple(v) for k, v in task["gain_ranges"].items()})  # type: ignore[misc]
    return space


def run_ultralytics_step(task: Mapping[str, Any], seed: int, data_root: Path) -> dict[str, Any]:
    """Ultralytics' own tuner for ``iterations`` x ``epochs``, from our first known point, offline, no plots."""
    from hemotune.offline import configure_ultralytics
    from hemotune.trainers import get_trainer

    configure_ultralytics()
    from hemotune.config import default_cache_dir
    from hemotune.trainers.yolo_detection.args import trial_data_yaml, ultralytics_train_args
    from hemotune.trainers.yolo_detection.patches import ultralytics_session

    space = load_task_space(task, "ultralytics", seed, data_root)
    trainer = get_trainer(space.trainer)
    prepared = trainer.prepare_data(space.dataset.as_dict(), space.fixed, default_cache_dir())
    point = task["points_to_evaluate"][0]
    resolved = trainer.resolve({**space.trial_params(point), "data": str(prepared.path)})
    work = Path(tempfile.mkdtemp(prefix=f"hemotune-bench-ultralytics-{seed}-"))
    try:
        args = ultralytics_train_args(
            resolved,
            data_yaml=trial_data_yaml(prepared.path, work),
            save_dir=work,
            device=task.get("device", "cpu"),
            workers=task.get("workers", 0),
        )
        for key in ("save_dir", "name"):
            args.pop(key, None)
        args.update(project=str(work), name="tune", exist_ok=False)
        import ultralytics.engine.tuner as tuner_module
        from ultralytics import YOLO

        tuner_module.plot_tune_results = lambda *a, **k: None  # no plot per iteration
        began = time.monotonic()
        with ultralytics_session():
            YOLO(str(resolved["model"])).tune(
                iterations=task["ultralytics_iterations"],
                space=ultralytics_space(task, resolved),
                **args,
            )
        wall = time.monotonic() - began
        lines = (work / "tune" / "tune_results.ndjson").read_text().splitlines()
        return {
            "wall_s": round(wall, 1),
            "objective": space.objective.metric,
            "trials": _ultralytics_trials(lines, int(resolved["epochs"])),
            "searched": {k: list(v) for k, v in ultralytics_space(task, resolved).items()},
            "fixed": {k: args[k] for k in ("optimizer", "imgsz", "batch", "epochs", "seed", "momentum")},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ultralytics_trials(lines: Sequence[str], epochs: int) -> list[dict[str, Any]]:
    """One record per tuner iteration: its fitness is mAP50-95 on val (Ultralytics 8.4 ``DetMetrics.fitness``)."""
    trials = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        datasets = row.get("datasets") or {}
        metrics = next(iter(datasets.values()), {}) if datasets else {}
        value = metrics.get("metrics/mAP50-95(B)", row.get("fitness", 0.0))
        value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0
        trials.append(
            {
                "trial_id": f"iteration-{row['iteration']}",
                "epochs": epochs,
                "objective": value,
                "outcome": "completed",
                "params": row.get("hyperparameters", {}),
            }
        )
    return trials
