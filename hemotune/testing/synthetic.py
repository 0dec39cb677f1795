"""A trainer whose learning curves you control: for testing schedulers, resume and fault tolerance.

Like timm's tiny test models, it exists so the tuning machinery (ASHA rungs,
checkpoint/resume, node loss, MLflow logging) can be exercised in seconds without
training a network. The curve of trial ``i`` after ``epoch`` epochs is::

    score = plateau * exp(-(log10(lr) - log10(best_lr))**2 / 2) * (1 - exp(-rate * epoch))

so a bad ``lr`` or a low ``plateau`` gives a curve that is low from the first
epoch on, and ASHA should stop it at the grace period. Its best epoch (and
``weights/best.json``) follows the search objective (default ``val/score``, max).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hemotune.data.prepared import PreparedData
from hemotune.errors import DataError, UsageError
from hemotune.metrics import best_key
from hemotune.trainers.base import (
    COMMON_PARAMS,
    Metrics,
    ParamSpec,
    Report,
    Trainer,
    TrialContext,
    write_per_image,
)

#: Resolved parameter values, as trainers receive them.
Values = Mapping[str, Any]
STATE_FILE = "state.json"
#: The one optimizer table: name -> factor on the plateau.
OPTIMIZER_FACTOR = {"SGD": 1.0, "Adam": 0.95, "AdamW": 0.97}
DEFAULT_OBJECTIVE = "val/score"
#: The best epoch's "weights" (a JSON file), where the real trainers keep ``best.pt``.
WEIGHTS = Path("weights") / "best.pt"


class SyntheticCurvesTrainer(Trainer):
    name = "synthetic_curves"
    task = "synthetic"
    description = "Analytic learning curves with controllable speed, failures and crashes (for tests)."
    params = {
        "lr": ParamSpec("float", "learning rate; the curve peaks at best_lr", low=0.0, low_exclusive=True),
        "best_lr": ParamSpec(
            "float", "the learning rate giving the highest plateau", low=0.0, low_exclusive=True
        ),
        "plateau": ParamSpec("float", "the value the curve approaches", low=0.0, high=1.0),
        "rate": ParamSpec("float", "how fast the curve rises per epoch", low=0.0, low_exclusive=True),
        "optimizer": ParamSpec(
            "str", "scales the plateau: SGD 1.0, Adam 0.95, AdamW 0.97", choices=tuple(OPTIMIZER_FACTOR)
        ),
        "seconds_per_epoch": ParamSpec(
            "float", "sleep per epoch, to make trials overlap", low=0.0, searchable=False
        ),
        "seed_noise": ParamSpec(
            "float",
            "standard deviation of a per-seed shift of the whole curve (0: seeds do nothing)",
            low=0.0,
        ),
        "fail_at_epoch": ParamSpec("int", "raise an error at this epoch (0: never)", low=0),
        "crash_at_epoch": ParamSpec(
            "int",
            "SIGKILL this process at this epoch, once per crash_marker_dir (0: never)",
            low=0,
            searchable=False,
        ),
        "crash_marker_dir": ParamSpec(
            "str", "folder whose marker files make crash_at_epoch happen once", searchable=False
        ),
        **COMMON_PARAMS,
    }
    dataset_options = {
        "expect_files": ParamSpec("int", "minimum number of files the folder must hold", low=0)
    }
    #: ``val/cost`` is the plateau: a second objective that conflicts with ``val/score`` (Pareto tests).
    metrics = ("val/score", "train/loss", "val/cost")
    #: Images of the synthetic test split (``prepare_test_data``).
    test_images = 200
    dataset_formats = ("auto", "any")

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        """The dataset is only checked to exist: curves do not depend on it."""
        from hemotune.data.fingerprint import fingerprint_tree

        path = Path(str(dataset["path"])).expanduser().resolve()
        if not path.exists():
            raise DataError(f"dataset path does not exist: {path}")
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        if len(files) < int(dataset.get("expect_files", 0) or 0):
            raise DataError(f"{path}: expected at least {dataset['expect_files']} files, found {len(files)}")
        return PreparedData(
            path=path, fingerprint=fingerprint_tree(path), source=str(path), summary={"files": len(files)}
        )

    def prepare_test_data(
        self, dataset: Mapping[str, Any], test_path: str | None, params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData | None:
        """``test_path`` (any existing file or folder; its files are not read) or the dataset's ``test/``."""
        candidate = Path(test_path) if test_path else Path(str(dataset["path"])) / "test"
        if not candidate.exists():
            if test_path:
                raise DataError(f"test set does not exist: {candidate}")
            return None
        prepared = self.prepare_data({"path": str(candidate)}, params, cache_dir)
        return replace(prepared, summary={**prepared.summary, "test_images": self.test_images})

    def evaluate_details(
        self, weights: Path, data: PreparedData, split: str, resolved: Values, context: TrialContext
    ) -> dict[str, Any]:
        """Deterministic, seed-dependent test metrics of the best epoch's score ``p`` (val: ``p`` itself).

        Image ``i`` is right when ``u < p`` with ``u`` uniform, drawn from ``(seed, i)`` only:
        the same seed gives every configuration the same draws (a paired design, as real
        seeds give the same data order), another seed other draws. ``test/score`` is the
        share of images right (so it is near ``p``), ``test/loss`` the mean ``|u - p|``.
        """
        if split not in ("val", "test"):
            raise UsageError(f"dataset {data.source} has no {split} split; it has: val, test")
        p = float(json.loads(Path(weights).read_text())["score"])
        if split == "val":  # the split training scored: its logged best, reproduced
            return {"metrics": {"val/score": p}, "split": split}
        seed = int(resolved.get("seed", context.seed))
        draws = [random.Random(f"{seed}:{i}").random() for i in range(self.test_images)]
        right = [float(u < p) for u in draws]
        metrics = {
            f"{split}/score": sum(right) / len(draws),
            f"{split}/loss": sum(abs(u - p) for u in draws) / len(draws),
        }
        # test/score is the mean of a per-image score: the base objective_on_subset recomputes it
        per_image = {"images": [f"image_{i:04d}" for i in range(len(draws))], "score": right}
        path = write_per_image(
            context.workdir / "evaluation", split, {**per_image, "metric": f"{split}/score"}
        )
        return {"metrics": metrics, "per_image_file": str(path), "images": len(draws), "split": split}

    def validate(self, fixed: Mapping[str, Any], searched: Collection[str]) -> list[str]:
        if fixed.get("crash_at_epoch") and not fixed.get("crash_marker_dir"):
            return ["crash_at_epoch needs crash_marker_dir (where the once-only marker is written)"]
        return []

    @staticmethod
    def score(params: Mapping[str, Any], epoch: int) -> float:
        lr = float(params.get("lr", 0.01))
        best_lr = float(params.get("best_lr", 0.01))
        plateau = float(params.get("plateau", 0.9))
        rate = float(params.get("rate", 0.5))
        peak = math.exp(-((math.log10(lr) - math.log10(best_lr)) ** 2) / 2.0)
        peak *= OPTIMIZER_FACTOR[str(params.get("optimizer", "SGD"))]
        shift = float(params.get("seed_noise", 0.0)) * random.Random(int(params.get("seed", 0))).gauss(
            0.0, 1.0
        )
        return plateau * peak * (1.0 - math.exp(-rate * epoch)) + shift

    def train(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
        """One point of the curve per epoch; the best epoch by the objective gets ``weights/best.json``."""
        epochs = int(resolved.get("epochs", 5))
        best = context.best_epoch(DEFAULT_OBJECTIVE, "max")
        start = 0
        if context.resume_from is not None:
            state = json.loads((context.resume_from / STATE_FILE).read_text())
            start = int(state["epoch"])
            best.restore(state["best"])
        ckpt_dir = context.workdir / "checkpoint"
        for epoch in range(start + 1, epochs + 1):
            time.sleep(float(resolved.get("seconds_per_epoch", 0.0)))
            self._maybe_fail(resolved, epoch)
            value = self.score(resolved, epoch)
            metrics = {
                "epoch": epoch,
                "val/score": value,
                "train/loss": 1.0 - value,
                "val/cost": float(resolved.get("plateau", 0.9)),
            }
            improved = best.update(epoch, metrics)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / STATE_FILE).write_text(json.dumps({"epoch": epoch, "best": best.state()}))
            artifacts = {}
            if improved:
                weights = context.workdir / WEIGHTS
                weights.parent.mkdir(parents=True, exist_ok=True)
                weights.write_text(json.dumps({"epoch": epoch, "score": value}))
                artifacts["weights/best.json"] = weights
            report(metrics, checkpoint=ckpt_dir, artifacts=artifacts)
        return {best_key(best.metric): best.value}

    @staticmethod
    def _maybe_fail(params: Mapping[str, Any], epoch: int) -> None:
        if int(params.get("fail_at_epoch", 0) or 0) == epoch:
            raise RuntimeError(f"synthetic failure at epoch {epoch} (fail_at_epoch)")
        crash_at = int(params.get("crash_at_epoch", 0) or 0)
        if crash_at == epoch:
            marker = Path(str(params["crash_marker_dir"])) / f"crashed-lr{params.get('lr')}-e{epoch}"
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
