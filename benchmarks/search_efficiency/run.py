#!/usr/bin/env python
"""Search efficiency on real data at equal epoch budgets: hemotune TPE + ASHA against random search and Ultralytics' tuner.

    python benchmarks/search_efficiency/run.py [--smoke] [--fresh] [--seeds 0 1 2] [--data-root DIR]

BCCD detection (``bcd_loss_weights``, YOLO11n from scratch): TPE + ASHA, random + ASHA,
random without early stopping (the ``search:`` section's ``sampler`` and ``scheduler``),
and Ultralytics' own tuner (``YOLO(...).tune``, its genetic algorithm) on the same data,
epochs per trial, image size and searched parameters. pbc8 classification
(``pbc_class_weights``): TPE + ASHA against random + ASHA. Each method runs once per seed
(the space's seed: sampler and training). Every method starts from the same single known
point (the space's first: Ultralytics' defaults, or the PBC study's recipe).

Each search (one method x one seed) is one step, run in its own process under
``flock /tmp/hemotune-heavy.lock`` (so other heavy jobs can slip in between) and kept in
``benchmarks/results/search_efficiency_steps.json`` as soon as it ends: a rerun skips
the steps done with the same sizes (``--fresh`` redoes them). Writes
``benchmarks/results/search_efficiency.json`` and the plots
``search_efficiency_bccd.png`` and ``search_efficiency_pbc8.png`` beside it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common
from benchmarks.search_efficiency import analysis

NAME = "search_efficiency"
DATASETS = common.REPO.parent / "shared" / "datasets"
BCCD_POINT = {"accumulate_steps": 4, "optimizer": "SGD", "base_lr": 0.01, "box": 7.5, "cls": 0.5, "dfl": 1.5}
PBC_POINT = {
    "model": "resnet18",
    "optimizer": "Adam",
    "base_lr": 1.0e-3,
    "weight_decay": 1.0e-6,
    "accumulate_steps": 1,
    "class_weighting": "none",
    "class_weight_beta": 0.999,
    "focal_gamma": 0.0,
    "balanced_sampling": False,
}
_BCCD_COMMON = {
    "task": "bccd",
    "methods": ["tpe_asha", "random_asha", "random_none", "ultralytics"],
    "reference": "random_none",
    "points_to_evaluate": [BCCD_POINT],
    "tpe_startup_trials": 3,
    "concurrent": 2,
    "reduction_factor": 2,
    # The space's ranges, for Ultralytics' tuner (lr0 and nbs derived from base_lr and accumulate_steps).
    "base_lr_range": [1.0e-4, 3.0e-2],
    "accumulate_choices": [1, 2, 4, 8],
    "gain_ranges": {"box": [2.5, 22.5], "cls": [0.15, 1.5], "dfl": [0.5, 4.5]},
}
_PBC_COMMON = {
    "task": "pbc8",
    "methods": ["tpe_asha", "random_asha"],
    "reference": "random_asha",
    "points_to_evaluate": [PBC_POINT],
    "tpe_startup_trials": 3,
    "concurrent": 2,
    "reduction_factor": 2,
}
#: The CPU size (2 cores, about 45 minutes) and the smoke size (the test: seconds, figures mean nothing).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "seeds": [0, 1, 2],
        "tasks": {
            # 205 train / 87 val images at 128 px, batch 8, no warm-up (the smoke preset): 6 epochs a trial.
            "bccd": {
                **_BCCD_COMMON,
                "epochs": 6,
                "grace_period": 2,
                "trials_asha": 7,
                "trials_no_stop": 4,
                "ultralytics_iterations": 4,
                "budget_epochs": 24,
                "sets": [],
            },
            # 48 images per class at 64 px, resnet18 or mobilenetv3 (the smoke preset's models).
            "pbc8": {
                **_PBC_COMMON,
                "epochs": 4,
                "grace_period": 1,
                "trials_asha": 7,
                "trials_no_stop": 7,
                "budget_epochs": 16,
                "sets": ["dataset.max_images_per_class=48"],
            },
        },
    },
    # The full-size search for a GPU machine (`--size gpu`): 416 px (the study's), all images, 30 epochs a
    # trial, 4 trials at a time sharing 2 GPUs, 5 seeds. Not run here (no GPU); see the README.
    "gpu": {
        "seeds": [0, 1, 2, 3, 4],
        "tasks": {
            "bccd": {
                **_BCCD_COMMON,
                "concurrent": 4,
                "reduction_factor": 3,
                "epochs": 30,
                "grace_period": 5,
                "trials_asha": 24,
                "trials_no_stop": 8,
                "ultralytics_iterations": 8,
                "budget_epochs": 240,
                "tpe_startup_trials": 6,
                "device": "0",
                "workers": 4,
                "sets": [
                    "fixed.imgsz=416",
                    "fixed.batch=16",
                    "fixed.warmup_epochs=3",
                    "resources.cpu=4",
                    "resources.gpu=0.5",
                ],
            },
            "pbc8": {
                **_PBC_COMMON,
                "concurrent": 4,
                "reduction_factor": 3,
                "epochs": 20,
                "grace_period": 2,
                "trials_asha": 24,
                "trials_no_stop": 24,
                "budget_epochs": 160,
                "tpe_startup_trials": 6,
                "sets": [
                    "dataset.max_images_per_class=100000",
                    "dataset.cache_imgsz=128",
                    "fixed.imgsz=128",
                    "fixed.batch=32",
                    "fixed.reference_batch=32",
                    "resources.cpu=4",
                    "resources.gpu=0.5",
                ],
            },
        },
    },
    "smoke": {
        "seeds": [0],
        "tasks": {
            "bccd": {
                **_BCCD_COMMON,
                "methods": ["tpe_asha", "random_none", "ultralytics"],
                "epochs": 1,
                "grace_period": 1,
                "trials_asha": 2,
                "trials_no_stop": 2,
                "ultralytics_iterations": 1,
                "budget_epochs": 2,
                "points_to_evaluate": [{**BCCD_POINT, "accumulate_steps": 1}],
                "accumulate_choices": [1, 2],  # 8 images / batch 4: 2 micro-batches an epoch
                "sets": [
                    "parameters.accumulate_steps={type: categorical, choices: [1, 2]}",
                    "dataset.max_train_images=8",
                    "dataset.max_val_images=4",
                    "fixed.imgsz=64",
                    "fixed.batch=4",
                ],
            },
        },
    },
}
STEPS_FILE = "search_efficiency_steps.json"


def step_key(task: dict[str, Any], method: str, seed: int) -> str:
    """A step's name and a digest of its sizes: changed sizes make a stored step stale."""
    digest = hashlib.sha256(json.dumps(task, sort_keys=True).encode()).hexdigest()[:10]
    return f"{task['task']}/{method}/seed{seed}/{digest}"


def run_step(task: dict[str, Any], method: str, seed: int, data_root: Path) -> dict[str, Any]:
    """One step in this process (``--step``): the search's trials in order of completion."""
    from benchmarks.search_efficiency import steps

    if method == "ultralytics":
        return steps.run_ultralytics_step(task, seed, data_root)
    return steps.run_hemotune_step(task, method, seed, data_root)


def launch_step(
    args: argparse.Namespace, size: str, task: str, method: str, seed: int
) -> dict[str, Any] | None:
    """Run one step in a child process (under the heavy-run lock unless ``--no-lock``); its JSON record."""
    cmd = [sys.executable, __file__, "--size", size, "--step", f"{task}/{method}/{seed}"]
    cmd += ["--data-root", str(args.data_root)]
    if not args.no_lock:  # past --stop-after, waiting for the lock gives up (exit 75)
        wait = ["-w", str(max(int(args.stop_after - time.time()), 1)), "-E", "75"] if args.stop_after else []
        cmd = ["flock", *wait, common.HEAVY_LOCK, *cmd]
    began = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode == 75 and args.stop_after:
        return None
    marker = [line for line in done.stdout.splitlines() if line.startswith("STEP-RESULT ")]
    if done.returncode != 0 or not marker:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"step {task}/{method}/{seed} failed (exit {done.returncode}):\n{tail}")
    record: dict[str, Any] = json.loads(marker[-1].removeprefix("STEP-RESULT "))
    record["step_wall_s"] = round(time.monotonic() - began, 1)  # includes waiting for the lock
    return record


def load_steps(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def plan(config: dict[str, Any], seeds: list[int]) -> list[tuple[str, str, int]]:
    """The order of the steps: each task's core comparison (TPE + ASHA, its reference, Ultralytics) seed
    by seed first, then the other methods, so that a run cut short leaves whole seeds of what matters most."""
    core, rest = [], []
    for name, task in config["tasks"].items():
        first = [m for m in task["methods"] if m in ("tpe_asha", task["reference"], "ultralytics")]
        core.append((name, first))
        rest.append((name, [m for m in task["methods"] if m not in first]))
    return [(name, method, seed) for name, methods in core + rest for seed in seeds for method in methods]


def run_all(args: argparse.Namespace, size: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every step of ``size``, skipping the stored ones; ``{task: {method: [record per seed]}}``."""
    config = SIZES[size]
    seeds = args.seeds or config["seeds"]
    path = args.out / STEPS_FILE.replace(
        ".json", {"full": "", "gpu": "-gpu", "smoke": "-smoke"}[size] + ".json"
    )
    stored = {} if args.fresh else load_steps(path)
    for name, method, seed in plan(config, seeds):
        key = step_key(config["tasks"][name], method, seed)
        if key in stored or args.stored_only:
            continue
        if args.stop_after and time.time() > args.stop_after:
            print(f"step {key}: not started, past --stop-after", flush=True)
            continue
        print(f"step {key}: running", flush=True)
        try:
            record = launch_step(args, size, name, method, seed)
        except RuntimeError as exc:  # one failed search leaves the others to run; a rerun retries it
            print(f"step {key}: FAILED, not stored: {exc}", flush=True)
            continue
        if record is None:
            print(f"step {key}: not started, the lock was not free before --stop-after", flush=True)
            continue
        stored[key] = {**record, "seed": seed}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=1) + "\n")
        trials = stored[key]["trials"]
        best = max((t["objective"] for t in trials), default=None)
        print(
            f"step {key}: {len(trials)} trials, {sum(t['epochs'] for t in trials)} epochs, best {best}, "
            f"{stored[key]['wall_s']} s",
            flush=True,
        )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name, task in config["tasks"].items():
        for method in task["methods"]:
            done = [stored[k] for k in (step_key(task, method, s) for s in seeds) if k in stored]
            if done:
                runs.setdefault(name, {})[method] = done
            else:
                print(f"{name}/{method}: no step done yet, left out", flush=True)
    return runs


def build_targets(summaries: dict[str, Any]) -> list[dict[str, Any]]:
    """Reach the reference's final best with <= 1/3 of its epochs (every seed); beat Ultralytics at equal budget."""
    targets = []
    for task, s in summaries.items():
        m = s["methods"].get("tpe_asha")
        if not m:
            continue
        t = common.target(
            f"{task}: TPE+ASHA epochs to reach {s['reference_method']}'s final best, fraction of its epochs",
            m["fraction_of_reference_epochs"],
            1 / 3,
        )
        if s["reference_final_best_mean"] is None:
            t["note"] = f"not measured: no {s['reference_method']} step done"
        elif m["seeds_reaching_reference"] < len(m["seeds"]):
            t["met"] = False
            t["note"] = f"only {m['seeds_reaching_reference']} of {len(m['seeds'])} seeds reached it"
        targets.append(t)
    if "bccd" not in summaries:
        return targets
    comparison = summaries["bccd"].get("ultralytics_comparison")
    if not comparison:
        t = common.target("bccd: TPE+ASHA best minus Ultralytics tuner best at equal budget", None, 0.0)
        targets.append({**t, "target": "> 0 mAP50-95", "note": "not measured: a side has no step done"})
    else:
        diff = comparison["mean_difference"]
        t = common.target(
            "bccd: TPE+ASHA best minus Ultralytics tuner best at equal budget (mean over seeds)",
            diff,
            0.0,
            unit="mAP50-95",
            higher_is_better=True,
        )
        t["met"] = bool(diff is not None and diff > 0)
        t["target"] = "> 0 mAP50-95"
        t["decided"] = comparison["decided"]
        targets.append(t)
    return targets


def summarize(runs: dict[str, Any], size: str) -> dict[str, Any]:
    """Per task: curves, bands, epochs to reach, the Ultralytics comparison, the noise statement."""
    summaries: dict[str, Any] = {}
    for task, by_method in runs.items():
        config = SIZES[size]["tasks"][task]
        s = analysis.summarize_task(by_method, config["reference"], config["budget_epochs"])
        summaries[task] = s
        ours = s["methods"].get("tpe_asha")
        if ours is None:  # --stored-only before its first TPE step
            continue
        ref = s["methods"].get(config["reference"])
        if ref is not None and config["reference"] != "tpe_asha":
            s["tpe_vs_reference_final_best"] = analysis.compare(
                [v or 0.0 for v in ours["final_best"]], [v or 0.0 for v in ref["final_best"]]
            )
            s["tpe_vs_reference_at_equal_budget"] = analysis.compare(
                [v or 0.0 for v in ours["best_at_budget"]], [v or 0.0 for v in ref["best_at_budget"]]
            )
        if "ultralytics" in s["methods"]:
            s["ultralytics_comparison"] = analysis.compare(
                [v or 0.0 for v in ours["best_at_budget"]],
                [v or 0.0 for v in s["methods"]["ultralytics"]["best_at_budget"]],
            )
    return summaries


def print_table(summaries: dict[str, Any]) -> None:
    rows = []
    for task, s in summaries.items():
        for m in s["methods"].values():
            finals = [v for v in m["final_best"] if v is not None]
            at_budget = [v for v in m["best_at_budget"] if v is not None]
            rows.append(
                {
                    "task": task,
                    "method": m["label"],
                    "seeds": len(m["seeds"]),
                    "epochs (mean)": round(sum(m["total_epochs"]) / max(len(m["total_epochs"]), 1), 1),
                    f"best at {s['equal_budget_epochs']} ep (mean, min-max)": _mean_range(at_budget),
                    "final best (mean, min-max)": _mean_range(finals),
                    "epochs to reach ref. (mean; seeds)": (
                        f"{m['mean_epochs_to_reach_reference']:.1f}; {m['seeds_reaching_reference']}/{len(m['seeds'])}"
                        if m["mean_epochs_to_reach_reference"] is not None
                        else f"never; 0/{len(m['seeds'])}"
                    ),
                    "wall s (mean)": round(sum(m["wall_s"]) / max(len(m["wall_s"]), 1)),
                }
            )
    print(common.fmt_table(rows, list(rows[0]) if rows else []))


def _mean_range(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{sum(values) / len(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def main() -> int:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--data-root", type=Path, default=DATASETS, help="folder with bccd/ and pbc8/")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2; smoke 0)")
    parser.add_argument("--fresh", action="store_true", help="redo every step (ignore stored ones)")
    parser.add_argument(
        "--stored-only", action="store_true", help="no new steps: figures from the steps stored so far"
    )
    parser.add_argument(
        "--stop-after",
        type=lambda text: datetime.datetime.fromisoformat(text).timestamp(),
        help="ISO time (e.g. 2026-12-02T05:00+00:00): start no step after it; the figures use the steps done",
    )
    parser.add_argument("--no-lock", action="store_true", help="no flock per step (already under the lock)")
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        help="full (2 CPU cores, default), gpu (full size), smoke (= --smoke)",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: TASK/METHOD/SEED, in this process
    args = parser.parse_args()
    size = args.size or ("smoke" if args.smoke else "full")
    args.smoke = size == "smoke"
    if args.step:
        task, method, seed = args.step.split("/")
        record = run_step(SIZES[size]["tasks"][task], method, int(seed), args.data_root)
        print("STEP-RESULT " + json.dumps(record, default=str), flush=True)
        return 0
    runs = run_all(args, size)
    seeds = args.seeds or SIZES[size]["seeds"]
    missing = [
        f"{name}/{method}/seed{seed}"
        for name, method, seed in plan(SIZES[size], seeds)
        if seed not in [r["seed"] for r in runs.get(name, {}).get(method, [])]
    ]
    if missing:
        print(f"steps not done yet ({len(missing)}): {', '.join(missing)}")
    summaries = summarize(runs, size)
    targets = build_targets(summaries)
    print_table(summaries)
    common.print_targets(targets)
    for task, s in summaries.items():
        suffix = {"full": "", "gpu": "_gpu", "smoke": "-smoke"}[size]
        metric = "val mAP50-95" if task == "bccd" else "val macro-F1"
        analysis.plot_task(
            s,
            f"{task}: best {metric} vs training epochs ({len(next(iter(s['methods'].values()))['seeds'])} seeds)",
            metric,
            args.out / f"{NAME}_{task}{suffix}.png",
        )
    path = common.write_result(
        NAME + ("_gpu" if size == "gpu" else ""),
        {
            "complete": not missing,
            "steps_missing": missing,
            "tasks": summaries,
            "noise": noise_statement(summaries),
        },
        out=args.out,
        smoke=args.smoke,
        targets=targets,
        settings={"size": size, "seeds": args.seeds or SIZES[size]["seeds"], "tasks": SIZES[size]["tasks"]},
    )
    print(f"wrote {path}")
    return 0


def noise_statement(summaries: dict[str, Any]) -> list[str]:
    """Plain sentences: which differences the seeds can decide and which they cannot."""
    lines = []
    for task, s in summaries.items():
        for key, what in (
            ("tpe_vs_reference_final_best", f"TPE+ASHA vs {s['reference_method']} (final bests)"),
            (
                "tpe_vs_reference_at_equal_budget",
                f"TPE+ASHA vs {s['reference_method']} at {s['equal_budget_epochs']} epochs",
            ),
            ("ultralytics_comparison", "TPE+ASHA vs Ultralytics' tuner at equal budget"),
        ):
            c = s.get(key)
            if not c:
                continue
            verdict = "decided" if c["decided"] else "undecidable with these seeds"
            lines.append(
                f"{task}: {what}: mean difference {c['mean_difference']}, one-sided Mann-Whitney p "
                f"{c['mann_whitney_p']}, bootstrap 95% interval {c['bootstrap_ci95']}, seed ranges "
                f"{'overlap' if c['ranges_overlap'] else 'do not overlap'}: {verdict}"
            )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
