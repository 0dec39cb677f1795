"""The "bare" side of the overhead benchmark: the same training without hemotune, Ray or MLflow.

    python benchmarks/overhead/bare.py yolo SETTINGS.json TIMES.json
    python benchmarks/overhead/bare.py cls SETTINGS.json TIMES.json

``yolo``: ``YOLO(model).train(**kwargs)`` with the keyword arguments in SETTINGS.json
(the very arguments the hemotune trial passes, so both train the same thing).
``cls``: a plain timm/PyTorch loop over the prepared (decoded) images: seeded
shuffling, flips and 90-degree turns, Adam, cosine learning rate, val macro-F1
after every epoch. This file imports nothing from hemotune: it is what a user
would write. TIMES.json gets wall-clock stamps (``time.time()``): ``start`` (this
script's first line), ``imported`` (the training library imported), ``first_epoch``
(the first epoch's validation done) and ``end``, plus the last epoch's metrics.
"""

from __future__ import annotations

import time

STAMPS = {"start": time.time()}

import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def train_yolo(settings: dict[str, Any]) -> dict[str, float]:
    """Ultralytics' own loop; a callback stamps the end of the first epoch's validation."""
    from ultralytics import YOLO

    STAMPS["imported"] = time.time()
    model = YOLO(settings["model"], task="detect")

    def on_fit_epoch_end(trainer: Any) -> None:
        STAMPS.setdefault("first_epoch", time.time())

    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    model.train(**settings["train_args"])
    metrics = model.trainer.metrics
    return {"val/mAP50": float(metrics.get("metrics/mAP50(B)", float("nan")))}


def load_split(folder: Path, split: str) -> tuple[Any, Any]:
    """The images (N, H, W, 3 uint8) and integer labels of one split of a prepared image folder."""
    import numpy as np

    classes = json.loads((folder / "meta.json").read_text())["classes"]
    with (folder / "split.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    index = np.array([int(r["index"]) for r in rows])
    images = np.load(folder / "images.npy", mmap_mode="r")[index]
    labels = np.array([classes.index(r["class"]) for r in rows], dtype=np.int64)
    return images, labels


def augment(x: Any, generator: Any) -> Any:
    """Random flips and 90-degree turns per image."""
    import torch

    n = x.shape[0]
    x = x.clone()
    h, v = torch.rand(n, generator=generator) < 0.5, torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(0, 4, (n,), generator=generator)
    x[h], x[v] = x[h].flip(3), x[v].flip(2)
    for k in (1, 2, 3):
        if (turns == k).any():
            x[turns == k] = torch.rot90(x[turns == k], k, dims=(2, 3))
    return x


def train_cls(s: dict[str, Any]) -> dict[str, float]:
    """A plain loop: timm model from scratch, Adam, cosine lr per epoch, val macro-F1 per epoch."""
    import math

    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import f1_score

    STAMPS["imported"] = time.time()
    torch.manual_seed(s["seed"])
    np.random.seed(s["seed"])
    folder = Path(s["data"])
    xs = {k: load_split(folder, k) for k in ("train", "val")}
    tensors = {
        k: (torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2), torch.from_numpy(y))
        for k, (x, y) in xs.items()
    }
    model = timm.create_model(s["model"], pretrained=False, num_classes=s["num_classes"])
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=s["lr"], betas=(0.9, 0.999), weight_decay=s["weight_decay"])
    train_x, train_y = tensors["train"]
    val_x, val_y = tensors["val"]
    f1 = float("nan")
    for epoch in range(1, s["epochs"] + 1):
        lr = s["lr"] * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(s["epochs"] - 1, 1))))
        for group in opt.param_groups:
            group["lr"] = lr
        gen = torch.Generator().manual_seed(s["seed"] * 1000 + epoch)
        order = torch.randperm(len(train_y), generator=gen)
        model.train()
        for lo in range(0, len(order) - s["batch"] + 1, s["batch"]):
            idx = order[lo : lo + s["batch"]]
            x = augment(train_x[idx], gen).float().div_(255.0)
            loss = F.cross_entropy(model((x - mean) / std), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            preds = [
                model((val_x[lo : lo + 64].float().div(255.0) - mean) / std).argmax(1)
                for lo in range(0, len(val_y), 64)
            ]
        f1 = float(f1_score(val_y.numpy(), torch.cat(preds).numpy(), average="macro"))
        STAMPS.setdefault("first_epoch", time.time())
    return {"val/macro_f1": f1}


def main() -> None:
    kind, settings_file, out_file = sys.argv[1:4]
    settings = json.loads(Path(settings_file).read_text())
    metrics = train_yolo(settings) if kind == "yolo" else train_cls(settings)
    STAMPS["end"] = time.time()
    Path(out_file).write_text(json.dumps({"stamps": STAMPS, "metrics": metrics}, indent=2))


if __name__ == "__main__":
    main()
