"""What one trial hands Ultralytics: the ``YOLO.train`` keyword arguments and its own data.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hemotune.errors import DataError
from hemotune.trainers.yolo_detection.params import AUGMENTATIONS

#: Arguments fixed so that a trial runs what it reports and nothing leaves the trial folder.
FIXED_ARGS: Mapping[str, Any] = {
    "project": None,
    "name": None,
    "exist_ok": True,
    "save": True,
    "save_period": -1,
    "val": True,
    "plots": False,
    "verbose": False,
    "cache": False,
    "rect": False,
    "multi_scale": 0.0,
    "fraction": 1.0,
    "time": None,
    "single_cls": False,
    "compile": False,
    "resume": False,
}


def ultralytics_train_args(
    resolved: Mapping[str, Any], *, data_yaml: Path, save_dir: Path, device: str, workers: int
) -> dict[str, Any]:
    """The keyword arguments of ``YOLO.train`` for a resolved parameter set (a new run, not a resume)."""
    return {
        "data": str(data_yaml),
        "epochs": int(resolved["epochs"]),
        "imgsz": int(resolved["imgsz"]),
        "batch": int(resolved["batch"]),
        "nbs": int(resolved["nbs"]),
        "optimizer": resolved["ultralytics_optimizer"],
        "lr0": float(resolved["lr0"]),
        "lrf": float(resolved["lrf"]),
        "momentum": float(resolved["momentum"]),
        "weight_decay": float(resolved["weight_decay"]),
        "warmup_epochs": float(resolved["warmup_epochs"]),
        "warmup_momentum": float(resolved["warmup_momentum"]),
        "warmup_bias_lr": float(resolved["warmup_bias_lr"]),
        "box": float(resolved["box"]),
        "cls": float(resolved["cls"]),
        "dfl": float(resolved["dfl"]),
        "cos_lr": bool(resolved["cos_lr"]),
        "close_mosaic": int(resolved["close_mosaic"]),
        **{k: float(resolved[k]) for k in AUGMENTATIONS},
        "amp": bool(resolved["amp"]),
        "patience": int(resolved["patience"]),
        "seed": int(resolved["seed"]),
        "deterministic": bool(resolved["deterministic"]),
        "device": device,
        "workers": int(workers),
        "pretrained": str(resolved["model"]).lower().endswith(".pt"),
        "save_dir": str(save_dir),
        **FIXED_ARGS,
    }


def trial_data_yaml(data: str | Path, workdir: Path) -> Path:
    """A data.yaml in ``workdir`` whose ``path`` is the prepared folder where this trial sees it.

    The cache's own data.yaml names the folder where it was built; a trial may see
    it elsewhere (another node, a copied cache), so each trial writes its own.
    """
    location = Path(data).expanduser().resolve()
    source = location if location.is_file() else location / "data.yaml"
    if not source.is_file():
        raise DataError(f"prepared dataset not found: {source} (expected a folder with data.yaml)")
    cfg = yaml.safe_load(source.read_text())
    if not isinstance(cfg, dict):
        raise DataError(f"{source}: must hold a mapping with train, val and names")
    root = Path(str(cfg.get("path") or source.parent))
    cfg["path"] = str(location if location.is_dir() else (source.parent / root).resolve())
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "data.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out
