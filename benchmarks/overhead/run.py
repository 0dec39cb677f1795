#!/usr/bin/env python
"""Overhead of one hemotune trial over the same training run directly, detection and classification.

    flock /tmp/hemotune-heavy.lock python benchmarks/overhead/run.py [--smoke] [--repeats 2]

For each task the two sides run interleaved (bare, hemotune, bare, hemotune, ...), on the
same prepared data (prepared once first, so both sides start from a warm cache):

* detection, bare: ``YOLO("yolo11n.yaml").train(...)`` with the very keyword arguments the
  hemotune trial passes (``bare.py yolo``); hemotune: ``hemotune search`` of a space with
  every value fixed (one trial), BCCD, the ``bcd_loss_weights`` baseline point;
* classification, bare: a plain timm/PyTorch loop (``bare.py cls``); hemotune: the
  ``pbc_class_weights`` recipe point (resnet18, Adam) as one fixed trial on pbc8.

Per run: the command's wall time, the training's own time (bare: from just before the
training library's import to the end of training; hemotune: the trial's ``time_total_s``
as Ray Tune measures it), time to the first epoch (command start to the first epoch's
validation done), peak summed RSS of the process tree. The hemotune command's fixed cost
(command minus trial) is broken down from its time-stamped output and a few separate
measurements (``breakdown.py``). Writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common
from benchmarks.overhead import breakdown

HERE = Path(__file__).resolve().parent
#: Real size: a trial of a few minutes on 2 CPU cores. Smoke: seconds.
SIZES = {
    "detection": {
        "real": {"epochs": 10, "imgsz": 160, "batch": 8, "max_train_images": None, "max_val_images": None},
        "smoke": {"epochs": 1, "imgsz": 64, "batch": 4, "max_train_images": 8, "max_val_images": 4},
    },
    "classification": {
        "real": {"epochs": 6, "imgsz": 64, "batch": 16, "max_images_per_class": 96},
        "smoke": {"epochs": 1, "imgsz": 32, "batch": 8, "max_images_per_class": 4},
    },
}
RATIO_TARGET = 1.03


def space_document(task: str, size: dict[str, Any], cpus: int) -> dict[str, Any]:
    """The shipped space's first known point with every value fixed: exactly one trial, no early stop."""
    from hemotune.spaces import find_space_file
    from hemotune.spaces.fixed import single_trial_document

    name = "bcd_loss_weights" if task == "detection" else "pbc_class_weights"
    doc = yaml.safe_load(find_space_file(name).read_text())
    point = dict(doc["points_to_evaluate"][0])
    doc.pop("presets", None)
    values: dict[str, Any] = {"imgsz": size["imgsz"], "batch": size["batch"]}
    if task == "detection":
        values.update(workers=0, warmup_epochs=0)
        if size["max_train_images"]:
            point["accumulate_steps"] = 1  # a tiny set has fewer micro-batches than 4
        doc["dataset"].update(
            max_train_images=size["max_train_images"], max_val_images=size["max_val_images"]
        )
    else:
        point["model"] = "resnet18"  # the smoke preset's recipe model; densenet121 takes far longer
        values["reference_batch"] = size["batch"]
        doc["dataset"].update(max_images_per_class=size["max_images_per_class"], cache_imgsz=size["imgsz"])
    out = single_trial_document(doc, {**point, **values}, name=f"overhead_{task}", seed=0)
    out["budget"].update(epochs=size["epochs"], grace_period=size["epochs"])
    out["resources"] = {"cpu": cpus, "gpu": 0}
    out["dataset"] = {k: v for k, v in out["dataset"].items() if v is not None}
    return out


def prepare(task: str, doc: dict[str, Any], data: Path, cache: Path) -> tuple[Any, dict[str, Any]]:
    """The prepared data (in ``cache``, as the hemotune command will find it) and the trial's resolved values."""
    from hemotune.trainers import get_trainer

    trainer = get_trainer(doc["trainer"])
    dataset = {**doc["dataset"], "path": str(data)}
    prepared = trainer.prepare_data(dataset, doc["fixed"], cache)
    resolved = trainer.resolve({**doc["fixed"], "epochs": doc["budget"]["epochs"], "seed": doc["seed"]})
    return prepared, resolved


def bare_settings(task: str, prepared: Any, resolved: dict[str, Any], work: Path) -> dict[str, Any]:
    """What ``bare.py`` trains: the Ultralytics arguments of the trial, or the loop's settings."""
    if task == "detection":
        from hemotune.trainers.yolo_detection.args import trial_data_yaml, ultralytics_train_args

        data_yaml = trial_data_yaml(prepared.path, work)
        args = ultralytics_train_args(
            resolved, data_yaml=data_yaml, save_dir=work / "ultralytics", device="cpu", workers=0
        )
        return {"model": resolved["model"], "train_args": args}
    return {
        "model": resolved["model"],
        "data": str(prepared.path),
        "num_classes": len(
            prepared.summary.get("classes")
            or json.loads((prepared.path / "meta.json").read_text())["classes"]
        ),
        "epochs": int(resolved["epochs"]),
        "batch": int(resolved["batch"]),
        "lr": float(resolved["base_lr"]) * int(resolved["batch"]) / int(resolved["reference_batch"]),
        "weight_decay": float(resolved["weight_decay"]),
        "seed": int(resolved["seed"]),
    }


def run_env(cache: Path, cpus: int) -> dict[str, str]:
    from hemotune.offline import offline_env

    env = {**os.environ, **offline_env(), "HEMOTUNE_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    env.update(OMP_NUM_THREADS=str(cpus))  # Ray sets this in the trial from resources.cpu: same for bare
    return env


def run_bare(task: str, settings: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    settings_file, times_file = work / "settings.json", work / "times.json"
    settings_file.write_text(json.dumps(settings, default=str))
    kind = "yolo" if task == "detection" else "cls"
    cmd = [sys.executable, str(HERE / "bare.py"), kind, str(settings_file), str(times_file)]
    res = common.timed_command(cmd, env=env, cwd=work)
    if res["exit_code"] != 0:
        raise RuntimeError(f"bare {task} failed:\n" + "\n".join(x[1] for x in res["lines"][-30:]))
    times = json.loads(times_file.read_text())
    st = times["stamps"]
    return {
        "side": "bare",
        "command_s": res["wall_s"],
        "training_s": round(st["end"] - st["start"], 3),
        "import_s": round(st["imported"] - st["start"], 3),
        "first_epoch_s": round(st["first_epoch"] - res["started"], 3),
        "peak_rss_gib": res["peak_rss_gib"],
        "metrics": times["metrics"],
    }


def trial_results(results: Path) -> list[dict[str, Any]]:
    """The one trial's reported rows (Ray Tune's result.json, one JSON object per epoch)."""
    files = sorted(results.rglob("result.json"))
    if len(files) != 1:
        raise RuntimeError(f"expected exactly one trial under {results}, found {len(files)}")
    return [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


def run_hemotune(space_file: Path, data: Path, work: Path, env: dict[str, str], cpus: int) -> dict[str, Any]:
    results = work / "results"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hemotune", "search", str(space_file), "--data", str(data)]
    cmd += ["--results-dir", str(results), "--no-progress", "--num-cpus", str(cpus)]
    res = common.timed_command(cmd, env=env, cwd=work)
    if res["exit_code"] != 0:
        raise RuntimeError("hemotune search failed:\n" + "\n".join(x[1] for x in res["lines"][-40:]))
    rows = trial_results(results)
    first_epoch = breakdown.first_epoch_time(results)
    if first_epoch is None:
        raise RuntimeError(f"no epoch metric in the MLflow store under {results}")
    first_epoch_s = first_epoch - res["started"]
    trial_s = float(rows[-1]["time_total_s"])
    trial_start = first_epoch_s - float(rows[0]["time_total_s"])
    return {
        "side": "hemotune",
        "command_s": res["wall_s"],
        "training_s": round(trial_s, 3),
        "first_epoch_s": round(first_epoch_s, 3),
        "peak_rss_gib": res["peak_rss_gib"],
        "epochs": len(rows),
        "phases": breakdown.phases(res["lines"], res["wall_s"], trial_start, trial_s),
        "output": [f"{t:7.2f} {line}" for t, line in res["lines"]],
    }


def compare(task: str, args: argparse.Namespace, root: Path, cache: Path) -> dict[str, Any]:
    """ABAB... of bare and hemotune for one task; medians and ratios."""
    size = SIZES[task]["smoke" if args.smoke else "real"]
    doc = space_document(task, size, args.cpus)
    data = args.data_root / ("bccd" if task == "detection" else "pbc8")
    space_file = root / f"overhead_{task}.yaml"
    space_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    prepared, resolved = prepare(task, doc, data, cache)
    env = run_env(cache, args.cpus)
    runs = []
    for i in range(args.repeats):
        work = root / f"{task}-{i}"
        settings = bare_settings(task, prepared, resolved, work / "bare")
        runs.append({"repeat": i, **run_bare(task, settings, work / "bare", env)})
        print(f"  {task} bare #{i}: {summary_line(runs[-1])}", flush=True)
        runs.append({"repeat": i, **run_hemotune(space_file, data, work / "hemotune", env, args.cpus)})
        print(f"  {task} hemotune #{i}: {summary_line(runs[-1])}", flush=True)
    return {"settings": {**size, "cpus": args.cpus, "data": str(data)}, "runs": runs, **medians(runs)}


def summary_line(run: dict[str, Any]) -> str:
    keys = ("command_s", "training_s", "first_epoch_s", "peak_rss_gib")
    return ", ".join(f"{k} {run.get(k)}" for k in keys)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each figure per side, and the hemotune / bare ratios of the medians."""
    out: dict[str, Any] = {}
    for side in ("bare", "hemotune"):
        mine = [r for r in runs if r["side"] == side]
        out[side] = {
            k: round(statistics.median(float(r[k]) for r in mine), 3)
            for k in ("command_s", "training_s", "first_epoch_s", "peak_rss_gib")
            if all(r.get(k) is not None for r in mine)
        }
    phase_runs = [r["phases"] for r in runs if r["side"] == "hemotune"]
    out["hemotune_phases_s"] = {
        k: round(statistics.median(float(p[k]) for p in phase_runs), 3)
        for k in phase_runs[0]
        if k.endswith("_s") and k != "markers_s"
    }
    b, h = out["bare"], out["hemotune"]
    out["ratio_command"] = round(h["command_s"] / b["command_s"], 4)
    out["ratio_training"] = round(h["training_s"] / b["training_s"], 4)
    out["fixed_cost_s"] = round(h["command_s"] - h["training_s"], 3)
    out["bare_fixed_cost_s"] = round(b["command_s"] - b["training_s"], 3)
    return out


def main() -> None:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    common.add_data_root_arg(parser)
    parser.add_argument("--repeats", type=int, default=2, help="ABAB pairs per task (default 2)")
    parser.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--tasks", nargs="+", default=["detection", "classification"])
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the separate fixed-cost measurements"
    )
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    root = Path(tempfile.mkdtemp(prefix="hemotune-overhead-"))
    cache = root / "cache"
    tasks = {}
    try:
        for task in args.tasks:
            print(f"{task}:", flush=True)
            tasks[task] = compare(task, args, root, cache)
        parts = {} if args.no_breakdown or args.smoke else breakdown.measure(root, run_env(cache, args.cpus))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    targets = [
        common.target(f"{t} command wall-time ratio (hemotune / bare)", r["ratio_command"], RATIO_TARGET)
        for t, r in tasks.items()
    ] + [
        common.target(f"{t} trial training-time ratio (hemotune / bare)", r["ratio_training"], RATIO_TARGET)
        for t, r in tasks.items()
    ]
    for t, r in tasks.items():
        print(f"{t}: bare {r['bare']}\n  hemotune {r['hemotune']}")
        print(f"  hemotune phases (median s): {r['hemotune_phases_s']}")
        print(
            f"  ratio command {r['ratio_command']}, training {r['ratio_training']}, fixed {r['fixed_cost_s']} s"
        )
    if parts:
        print("fixed-cost parts measured separately (s):", json.dumps(parts))
    common.publish(
        "overhead",
        {"tasks": tasks, "fixed_cost_parts_s": parts},
        out=args.out,
        smoke=args.smoke,
        targets=targets,
        settings={"repeats": args.repeats, "cpus": args.cpus, "order": "bare, hemotune alternating"},
    )


if __name__ == "__main__":
    main()
