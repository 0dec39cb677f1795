#!/usr/bin/env python
"""Per-trial data start-up: the first and the later trials of a search, detection and classification.

    flock /tmp/hemotune-heavy.lock python benchmarks/data_path/run.py [--smoke] [--repeats 3]

A search prepares its data once, on the driver, with the trainer's ``prepare_data``
(conversion or decode into the content-hash cache; a later search finds it there
and only checks it); each trial then opens the prepared data itself. Measured, in
this process, for BCCD (``bcd_loss_weights``), pbc8 (``pbc_class_weights``) and
all_leukemia (``all_leukemia``) at the shipped spaces' full dataset settings:

* ``prepare_cold``: ``prepare_data`` into an empty cache (the first search on a machine);
* ``prepare_warm``: the same call again, a cache hit (every later search, and a trial on
  another node that checks its copy): source listing, content hash, manifest read;
* ``trial_open_first`` / ``trial_open_later``: what a trial does with the prepared data
  before its first batch: detection, Ultralytics' ``YOLODataset`` of the train and val
  splits (the first one scans the labels and writes ``labels/*.cache``, later ones
  read it); classification, ``load_prepared`` + ``split_tensors`` of train and val
  (memory-mapped arrays to tensors at the trial's image size).

Target: every warm figure (what a trial after the first pays) <= 2 s.
Writes benchmarks/results/data_path.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common

CASES = {"bccd": "bcd_loss_weights", "pbc8": "pbc_class_weights", "all_leukemia": "all_leukemia"}
TARGET_S = 2.0
#: Smoke: tiny subsets (figures mean nothing).
SMOKE_DATASET = {
    "bccd": {"max_train_images": 8, "max_val_images": 4},
    "pbc8": {"max_images_per_class": 4, "cache_imgsz": 32},
    "all_leukemia": {"max_images_per_class": 4, "cache_imgsz": 32},
}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def open_detection(prepared: Any, imgsz: int) -> int:
    """Ultralytics' train and val datasets of the prepared folder, as a trial's trainer builds them."""
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    from hemotune.offline import configure_ultralytics

    configure_ultralytics()
    data = check_det_dataset(str(prepared.path / "data.yaml"))
    n = 0
    for split in ("train", "val"):
        ds = YOLODataset(img_path=data[split], imgsz=imgsz, augment=False, data=data, task="detect")
        n += len(ds)
    return n


def open_classification(prepared: Any, imgsz: int) -> int:
    """``load_prepared`` + ``split_tensors`` of train and val, as a classification trial starts."""
    from hemotune.data.imagefolder import load_prepared
    from hemotune.trainers.image_classification.batches import split_tensors

    _, splits = load_prepared(prepared.path)
    return sum(int(split_tensors(splits[s], imgsz, False).shape[0]) for s in ("train", "val"))


def clear_label_caches(prepared: Any) -> None:
    """Remove Ultralytics' ``labels/*.cache`` files: the state before a search's first trial."""
    for cache in Path(prepared.path).rglob("*.cache"):
        cache.unlink()


def measure(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from hemotune.spaces import load_space
    from hemotune.trainers import get_trainer

    space = load_space(CASES[name], data=str(args.data_root / name))
    trainer = get_trainer(space.trainer)
    dataset = {**space.dataset.as_dict(), **(SMOKE_DATASET[name] if args.smoke else {})}
    imgsz = int(dataset.get("cache_imgsz") or space.fixed.get("imgsz") or 64)
    if name == "bccd":
        imgsz = 64 if args.smoke else int(space.fixed["imgsz"])
    fixed = {**space.fixed, "imgsz": imgsz}
    cache = root / f"cache-{name}"
    cold_s, prepared = timed(lambda: trainer.prepare_data(dataset, fixed, cache))
    warm = [timed(lambda: trainer.prepare_data(dataset, fixed, cache))[0] for _ in range(args.repeats)]
    opener = open_detection if name == "bccd" else open_classification
    if name == "bccd":
        clear_label_caches(prepared)
        import ultralytics.data  # noqa: F401  (a trial imports it to train anyway: not data start-up)

    first_s, images = timed(lambda: opener(prepared, imgsz))
    later = [timed(lambda: opener(prepared, imgsz))[0] for _ in range(args.repeats)]
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "space": CASES[name],
        "trainer": space.trainer,
        "dataset_options": {k: v for k, v in dataset.items() if k != "path"},
        "trial_imgsz": imgsz,
        "images_opened": images,
        "summary": {k: v for k, v in prepared.summary.items() if isinstance(v, (int, str))},
        "prepare_cold_s": round(cold_s, 3),
        "prepare_warm_s": round(statistics.median(warm), 3),
        "prepare_warm_all_s": [round(x, 3) for x in warm],
        "trial_open_first_s": round(first_s, 3),
        "trial_open_later_s": round(statistics.median(later), 3),
        "trial_open_later_all_s": [round(x, 3) for x in later],
    }


def main() -> None:
    parser = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    common.add_data_root_arg(parser)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls per figure (median reported)")
    parser.add_argument("--datasets", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    from hemotune.offline import apply_offline_env

    apply_offline_env()
    root = Path(tempfile.mkdtemp(prefix="hemotune-data-path-"))
    rows = {}
    try:
        for name in args.datasets:
            rows[name] = measure(name, args, root)
            r = rows[name]
            print(
                f"{name}: prepare cold {r['prepare_cold_s']} s, warm {r['prepare_warm_s']} s; "
                f"trial open first {r['trial_open_first_s']} s, later {r['trial_open_later_s']} s "
                f"({r['images_opened']} images at {r['trial_imgsz']} px)",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    targets = []
    for name, r in rows.items():
        targets.append(
            common.target(
                f"{name} prepare_data warm (later searches)", r["prepare_warm_s"], TARGET_S, unit="s"
            )
        )
        targets.append(
            common.target(
                f"{name} trial data open, later trials", r["trial_open_later_s"], TARGET_S, unit="s"
            )
        )
    common.publish(
        "data_path",
        {"datasets": rows},
        out=args.out,
        smoke=args.smoke,
        targets=targets,
        settings={"repeats": args.repeats, "data_root": str(args.data_root)},
    )


if __name__ == "__main__":
    main()
