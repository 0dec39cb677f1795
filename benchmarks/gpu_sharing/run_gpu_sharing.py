#!/usr/bin/env python
"""Packing trials on one GPU: 1, 2 and 4 trials per GPU, for YOLO11n (detection) and a small CNN.

For each model and each k in ``--concurrency`` (default 1 2 4), runs a real hemotune search
of k *identical* trials with ``resources.gpu = 1/k`` on ONE GPU:

* ``yolo11n``: ``bcd_loss_weights`` at its first known point (Ultralytics' defaults) on BCCD;
* ``resnet18``: ``pbc_class_weights`` at its first known point with ``model: resnet18`` on pbc8;

and records per run: wall time of the search (Ray is started once, first), trials per
hour, aggregate and steady-state images per second (steady: sum over trials of train
images / median epoch time, Tune's ``time_this_iter_s``), and GPU 0's memory and
utilisation sampled every second with ``nvidia-smi``. Sharing pays where trials per hour
at k = 2 or 4 exceed k = 1. Writes benchmarks/results/gpu_sharing.json and .md.

    python benchmarks/gpu_sharing/run_gpu_sharing.py                     # needs a CUDA GPU
    python benchmarks/gpu_sharing/run_gpu_sharing.py --models yolo11n --epochs 5 --data /path/to/bccd
    python benchmarks/gpu_sharing/run_gpu_sharing.py --smoke             # no GPU: the pipeline on CPU, tiny

Without a visible CUDA GPU (and without ``--smoke``) it exits with status 2 and says so,
before starting anything. See benchmarks/gpu_sharing/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common

DATASETS = common.DATASETS
#: model -> (shipped space, dataset folder under ../shared/datasets, overrides of the known point)
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "yolo11n": ("bcd_loss_weights", "bccd", {}),
    "resnet18": ("pbc_class_weights", "pbc8", {"model": "resnet18"}),
}


class GpuSampler(threading.Thread):
    """Samples ``nvidia-smi`` (memory used, utilisation of GPU 0) every second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def run(self) -> None:
        while self.available and not self.stop.wait(1.0):
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--id=0",
                    "--query-gpu=memory.used,utilization.gpu",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            try:
                memory, util = (float(x) for x in out.split(","))
            except ValueError:
                continue
            self.samples.append((memory, util))

    def summary(self) -> dict[str, float | None]:
        if not self.samples:
            return {"peak_memory_mib": None, "mean_utilization_pct": None, "gpu_samples": 0}
        return {
            "peak_memory_mib": max(m for m, _ in self.samples),
            "mean_utilization_pct": round(statistics.fmean(u for _, u in self.samples), 1),
            "gpu_samples": len(self.samples),
        }


def space_file(model: str, k: int, args: argparse.Namespace, folder: Path) -> Path:
    """The model's space with k identical trials at its first known point, 1/k GPU each."""
    from hemotune.spaces import find_space_file

    space, _, overrides = MODELS[model]
    doc = yaml.safe_load(find_space_file(space).read_text())
    point = {**doc["points_to_evaluate"][0], **overrides}
    doc["name"] = f"gpu_sharing_{model}_k{k}"
    doc.pop("presets", None)
    doc["points_to_evaluate"] = [point] * k
    doc["budget"].update(num_samples=k, max_concurrent=k, epochs=args.epochs, grace_period=args.epochs)
    doc["resources"] = {"cpu": args.cpus_per_trial, "gpu": 0 if args.smoke else round(1.0 / k, 4)}
    if model == "yolo11n":
        doc["fixed"].update(imgsz=args.imgsz, batch=args.batch, workers=args.dataloader_workers)
        if args.max_train_images:
            n = args.max_train_images
            doc["dataset"].update(max_train_images=n, max_val_images=max(n // 2, 1))
            doc["points_to_evaluate"] = [{**point, "accumulate_steps": 1}] * k
    else:
        doc["fixed"].update(imgsz=args.cls_imgsz, batch=args.cls_batch, reference_batch=args.cls_batch)
        doc["dataset"]["cache_imgsz"] = args.cls_imgsz
        if args.max_train_images:
            doc["dataset"]["max_images_per_class"] = max(args.max_train_images, 8)  # val needs some
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_one(model: str, k: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from hemotune.config import RunSettings
    from hemotune.data.remote import localize_dataset
    from hemotune.results import read_trials
    from hemotune.spaces import load_space
    from hemotune.trainers import get_trainer
    from hemotune.tuning import run_search

    data = args.data if model == "yolo11n" else args.cls_data
    space = load_space(str(space_file(model, k, args, folder)), data=str(data))
    settings = RunSettings(
        results_dir=str(folder / "results"),
        local_dir=folder / "results",
        show_progress=False,
        experiment_name=f"gpu_sharing_{model}_k{k}",
    )
    trainer = get_trainer(space.trainer)
    prepared = trainer.prepare_data(
        localize_dataset(space.dataset.as_dict(), settings.cache_dir), space.fixed, settings.cache_dir
    )
    summary = prepared.summary
    train_images = int(
        summary.get("train images") or sum((summary.get("counts") or {}).get("train", {}).values())
    )
    sampler = GpuSampler()
    sampler.start()
    began = time.time()
    outcome = run_search(space, settings)
    wall = time.time() - began
    sampler.stop.set()
    records = read_trials(outcome.experiment_path, space)
    epochs = [len(r.history) for r in records]
    epoch_times = [[float(row["time_this_iter_s"]) for row in r.history] for r in records]
    completed = sum(1 for r in records if r.status == "TERMINATED")
    return {
        "model": model,
        "trials_per_gpu": k,
        "gpu_per_trial": space.resources.gpu,
        "trials_completed": completed,
        "epochs_per_trial": epochs,
        "train_images": train_images,
        "wall_s": round(wall, 1),
        "trials_per_hour": round(completed * 3600.0 / wall, 2),
        "images_per_s_aggregate": round(train_images * sum(epochs) / wall, 1),
        "images_per_s_steady": round(sum(train_images / statistics.median(t) for t in epoch_times if t), 1),
        "median_epoch_s": [round(statistics.median(t), 2) for t in epoch_times if t],
        **sampler.summary(),
    }


def markdown(rows: list[dict[str, Any]], gpu: str, args: argparse.Namespace) -> str:
    head = (
        f"# GPU packing on {gpu}\n\n{args.epochs} epochs per trial; YOLO11n at {args.imgsz} px, batch "
        f"{args.batch}; resnet18 at {args.cls_imgsz} px, batch {args.cls_batch}; {time.strftime('%Y-%m-%d')}.\n\n"
    )
    cols = ["model", "trials_per_gpu", "wall_s", "trials_per_hour", "images_per_s_aggregate"]
    cols += ["images_per_s_steady", "median_epoch_s", "peak_memory_mib", "mean_utilization_pct"]
    return head + common.fmt_table(rows, cols) + "\n"


def parse_args() -> argparse.Namespace:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument(
        "--data", default=str(DATASETS / "bccd"), help="BCCD (VOC folder or s3://bucket/prefix)"
    )
    parser.add_argument("--cls-data", default=str(DATASETS / "pbc8"), help="pbc8 image folder (or s3://...)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=416, help="YOLO11n image size")
    parser.add_argument("--batch", type=int, default=16, help="YOLO11n micro-batch")
    parser.add_argument("--cls-imgsz", type=int, default=224, help="resnet18 image size")
    parser.add_argument("--cls-batch", type=int, default=32, help="resnet18 batch")
    parser.add_argument("--cpus-per-trial", type=float, default=2.0)
    parser.add_argument("--dataloader-workers", type=int, default=2)
    parser.add_argument("--max-train-images", type=int, default=0, help="0: all")
    parser.add_argument("--cpu-smoke", dest="smoke", action="store_true", help="alias of --smoke")
    args = parser.parse_args()
    if args.smoke:
        args.imgsz, args.batch, args.epochs, args.cls_imgsz, args.cls_batch = 64, 4, 1, 32, 8
        args.max_train_images = args.max_train_images or 8
        args.cpus_per_trial, args.dataloader_workers = 1.0, 0
        args.concurrency = [1, 2]
    return args


def require_gpu() -> str:
    """The name of GPU 0; exits with status 2 and a message when no CUDA GPU is visible."""
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_sharing: no CUDA GPU visible (torch.cuda.is_available() is False): run this on a machine "
            "with an NVIDIA GPU (see benchmarks/gpu_sharing/README.md), or pass --smoke to check the "
            "script on CPU at a tiny size",
            file=sys.stderr,
        )
        raise SystemExit(2)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # exactly one GPU is shared
    return str(torch.cuda.get_device_name(0))


def main() -> None:
    args = parse_args()
    from hemotune.offline import apply_offline_env, local_ray_env, offline_env

    gpu = "cpu (smoke)" if args.smoke else require_gpu()
    apply_offline_env()
    import ray

    work = Path(tempfile.mkdtemp(prefix="hemotune-gpu-sharing-"))
    with local_ray_env() as proxies:
        ray.init(
            address="local",
            num_cpus=max(2, int(args.cpus_per_trial * max(args.concurrency))),
            num_gpus=0 if args.smoke else 1,
            include_dashboard=False,
            runtime_env={"env_vars": {**offline_env(), **proxies}},
        )
    try:
        rows = []
        for model in args.models:
            for k in args.concurrency:
                rows.append(run_one(model, k, args, work / f"{model}-k{k}"))
                print(
                    {key: rows[-1][key] for key in ("model", "trials_per_gpu", "wall_s", "trials_per_hour")}
                )
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    targets = []
    for model in args.models:
        mine = {r["trials_per_gpu"]: r["trials_per_hour"] for r in rows if r["model"] == model}
        if 1 in mine and len(mine) > 1:
            best = max(v for k, v in mine.items() if k != 1) / mine[1] if mine[1] else None
            targets.append(
                common.target(
                    f"{model}: best packed trials/hour over 1 per GPU", best, 1.0, higher_is_better=True
                )
            )
    table = markdown(rows, gpu, args)
    print(table)
    common.print_targets(targets)
    path = common.write_result(
        "gpu_sharing",
        {"gpu": gpu, "runs": rows},
        out=args.out,
        smoke=args.smoke,
        targets=targets,
        settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    path.with_suffix(".md").write_text(table)
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
