#!/usr/bin/env python
"""Throughput of 1, 2 and 4 YOLO11n trials sharing one GPU (fractional ``resources.gpu``).

For each concurrency k, runs a real hemotune search of k identical trials (the
bcd_loss_weights space at Ultralytics' default hyperparameters, the study's
baseline) with ``resources.gpu = 1/k`` on ONE GPU, and records:

* wall time of the search (Ray start-up excluded: Ray is started once, first);
* aggregate training throughput: k x train images x epochs / wall time;
* steady-state throughput: sum over trials of train images / median epoch time
  (Tune's ``time_this_iter_s``, training + validation of one epoch);
* peak GPU memory and mean utilisation, sampled with ``nvidia-smi`` when present.

Results go to ``--out`` as ``<gpu name>.json`` and ``<gpu name>.md``.

    python benchmarks/gpu_sharing/run_gpu_sharing.py --data /path/to/bccd          # VOC folder
    python benchmarks/gpu_sharing/run_gpu_sharing.py --data s3://bucket/datasets/bccd --epochs 5

See benchmarks/gpu_sharing/README.md. ``--cpu-smoke`` runs the same pipeline without a
GPU at a tiny size, to check the script itself (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from hemotune.config import RunSettings
from hemotune.data.remote import localize_dataset
from hemotune.offline import apply_offline_env, local_ray_env, offline_env
from hemotune.results import read_trials
from hemotune.spaces import find_space_file, load_space
from hemotune.trainers import get_trainer
from hemotune.tuning import run_search

HERE = Path(__file__).resolve().parent


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
            return {"peak_memory_mib": None, "mean_utilization_pct": None}
        return {
            "peak_memory_mib": max(m for m, _ in self.samples),
            "mean_utilization_pct": round(statistics.fmean(u for _, u in self.samples), 1),
        }


def gpu_name() -> str:
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--id=0", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if out:
            return out
    return "cpu"


def space_file(k: int, args: argparse.Namespace, folder: Path) -> Path:
    """bcd_loss_weights with k identical trials at the baseline point, 1/k GPU each."""
    doc = yaml.safe_load(find_space_file("bcd_loss_weights").read_text())
    baseline = dict(doc["points_to_evaluate"][0])
    doc["name"] = f"gpu_sharing_k{k}"
    doc.pop("presets", None)
    doc["points_to_evaluate"] = [baseline] * k
    doc["budget"].update(num_samples=k, max_concurrent=k, epochs=args.epochs, grace_period=args.epochs)
    doc["resources"] = {"cpu": args.cpus_per_trial, "gpu": 0 if args.cpu_smoke else round(1.0 / k, 4)}
    doc["fixed"].update(imgsz=args.imgsz, batch=args.batch, workers=args.dataloader_workers)
    if args.max_train_images:
        doc["dataset"].update(
            max_train_images=args.max_train_images, max_val_images=args.max_train_images // 2
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"gpu_sharing_k{k}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_one(k: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    space = load_space(str(space_file(k, args, folder)), data=args.data)
    settings = RunSettings(
        results_dir=str(folder / "results"),
        local_dir=folder / "results",
        show_progress=False,
        experiment_name=f"gpu_sharing_k{k}",
    )
    trainer = get_trainer(space.trainer)
    prepared = trainer.prepare_data(
        localize_dataset(space.dataset.as_dict(), settings.cache_dir), space.fixed, settings.cache_dir
    )
    train_images = int(prepared.summary.get("train images", 0))
    sampler = GpuSampler()
    sampler.start()
    began = time.time()
    outcome = run_search(space, settings)
    wall = time.time() - began
    sampler.stop.set()
    records = read_trials(outcome.experiment_path, space)
    epochs = [len(r.history) for r in records]
    epoch_times = [[float(row["time_this_iter_s"]) for row in r.history] for r in records]
    steady = sum(train_images / statistics.median(t) for t in epoch_times if t)
    return {
        "concurrent_trials": k,
        "gpu_per_trial": space.resources.gpu,
        "trials_completed": sum(1 for r in records if r.status == "TERMINATED"),
        "epochs_per_trial": epochs,
        "train_images": train_images,
        "wall_s": round(wall, 1),
        "images_per_s_aggregate": round(train_images * sum(epochs) / wall, 1),
        "images_per_s_steady": round(steady, 1),
        "median_epoch_s": [round(statistics.median(t), 2) for t in epoch_times if t],
        **sampler.summary(),
    }


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"# GPU sharing: YOLO11n on {meta['gpu']}",
        "",
        f"BCCD ({rows[0]['train_images']} train images), imgsz {meta['imgsz']}, batch {meta['batch']}, "
        f"{meta['epochs']} epochs per trial, hemotune {meta['hemotune']}, Ray {meta['ray']}, "
        f"torch {meta['torch']}, {meta['date']}.",
        "",
        "| trials on 1 GPU | GPU each | wall s | images/s (aggregate) | images/s (steady) | median epoch s "
        "| peak MiB | mean util % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['concurrent_trials']} | {r['gpu_per_trial']:g} | {r['wall_s']} | {r['images_per_s_aggregate']} "
            f"| {r['images_per_s_steady']} | {', '.join(map(str, r['median_epoch_s']))} "
            f"| {r['peak_memory_mib'] or '-'} | {r['mean_utilization_pct'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="BCCD as a Pascal VOC folder, or s3://bucket/prefix")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cpus-per-trial", type=float, default=2.0)
    parser.add_argument("--dataloader-workers", type=int, default=2)
    parser.add_argument("--max-train-images", type=int, default=0, help="0: all")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--cpu-smoke", action="store_true", help="no GPU: check the pipeline at a tiny size")
    args = parser.parse_args()
    if args.cpu_smoke:
        args.imgsz, args.batch, args.epochs = 128, 4, 1
        args.max_train_images = args.max_train_images or 16
        args.cpus_per_trial = 1.0
        args.dataloader_workers = 0

    import ray
    import torch

    apply_offline_env()
    if not args.cpu_smoke:
        if not torch.cuda.is_available():
            raise SystemExit(
                "no CUDA GPU visible: run on a GPU machine (or pass --cpu-smoke to test the script)"
            )
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # exactly one GPU is shared
    work = Path(tempfile.mkdtemp(prefix="hemotune-gpu-sharing-"))
    with local_ray_env() as proxies:
        ray.init(
            num_gpus=0 if args.cpu_smoke else 1,
            include_dashboard=False,
            runtime_env={"env_vars": {**offline_env(), **proxies}},
        )
    try:
        rows = [run_one(k, args, work / f"k{k}") for k in args.concurrency]
    finally:
        ray.shutdown()
    from hemotune._version import __version__

    meta = {
        "gpu": gpu_name(),
        "imgsz": args.imgsz,
        "batch": args.batch,
        "epochs": args.epochs,
        "hemotune": __version__,
        "ray": ray.__version__,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "cpu_smoke": args.cpu_smoke,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = meta["gpu"].replace(" ", "_") + ("-cpu-smoke" if args.cpu_smoke else "")
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    table = markdown(rows, meta)
    (args.out / f"{stem}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
