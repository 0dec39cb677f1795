"""The configuration checks run from Ultralytics callbacks: a trial runs what it asked, or fails.

Ultralytics may silently change a configuration: AutoBatch or out-of-memory
batch halving, ``optimizer=auto``, an ``imgsz`` rounded to its grid, another
``nbs``. ``ConfigurationGuard`` compares what the Ultralytics trainer really
built with the resolved parameters and raises ``TrialConfigurationError``. Outside
warm-up ``accumulate`` must be ``accumulate_steps`` K. A run with fewer
micro-batches in all than K, where Ultralytics would cap ``accumulate`` at that
number (``expected_accumulate``) while ``lr0`` stays scaled for K, fails too
(``accumulation_cap_problem``), before any training step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hemotune.errors import TrialConfigurationError
from hemotune.trainers.yolo_detection.rules import accumulation_cap_problem, effective_warmup_epochs


class ConfigurationGuard:
    """Checks an Ultralytics trainer object against one trial's resolved parameters."""

    def __init__(self, resolved: Mapping[str, Any], save_dir: Path) -> None:
        self.resolved = resolved
        self.save_dir = save_dir
        self.expected_data = ""
        self.accumulate_target = 0

    def check_paths(self, trainer: Any) -> None:
        """The data.yaml and the run folder are the trial's own."""
        if Path(str(trainer.args.data)).resolve() != Path(self.expected_data).resolve():
            raise TrialConfigurationError(
                f"Ultralytics uses data {trainer.args.data}, not {self.expected_data}"
            )
        if Path(trainer.save_dir).resolve() != self.save_dir:
            raise TrialConfigurationError(f"Ultralytics writes to {trainer.save_dir}, not {self.save_dir}")

    def check_setup(self, trainer: Any) -> None:
        """After the optimizer, dataloaders and a resumed state exist: check they are what was asked."""
        resolved = self.resolved
        self.check_batch(trainer)
        self.check_optimizer(trainer)
        self.check_accumulation_cap(trainer)
        problems = []
        if int(trainer.args.imgsz) != int(resolved["imgsz"]):
            problems.append(f"imgsz is {trainer.args.imgsz}, asked {resolved['imgsz']}")
        if int(trainer.args.nbs) != int(resolved["nbs"]):
            problems.append(f"nbs is {trainer.args.nbs}, asked {resolved['nbs']}")
        problems += self._lr_problems(trainer)
        self.accumulate_target = int(resolved["accumulate_steps"])
        if trainer.accumulate != self.accumulate_target:
            problems.append(f"accumulate is {trainer.accumulate}, expected {self.accumulate_target}")
        if problems:
            raise TrialConfigurationError("Ultralytics changed the configuration: " + "; ".join(problems))

    def check_accumulation_cap(self, trainer: Any) -> None:
        """The run has at least ``accumulate_steps`` micro-batches in all, so Ultralytics does not cap it."""
        problem = accumulation_cap_problem(
            int(self.resolved["accumulate_steps"]), len(trainer.train_loader), int(trainer.epochs)
        )
        if problem:
            dataset = getattr(trainer.train_loader, "dataset", None)
            images = f"{len(dataset)} train images" if dataset is not None else "the train set"
            raise TrialConfigurationError(f"{images} at batch {trainer.batch_size}: {problem}")

    def _lr_problems(self, trainer: Any) -> list[str]:
        lr0 = float(self.resolved["lr0"])
        for group in trainer.optimizer.param_groups:
            if not math.isclose(float(group.get("initial_lr", lr0)), lr0, rel_tol=1e-9):
                return [f"lr0 is {group.get('initial_lr')}, asked {self.resolved['lr0']}"]
        return []

    def check_accumulation(self, trainer: Any) -> None:
        """At an epoch's end: ``accumulate`` ramps ``1..target`` in warm-up and is ``target`` after it."""
        batches = len(trainer.train_loader)
        warmup = effective_warmup_epochs(trainer.args.warmup_epochs, trainer.epochs)
        warmup_iterations = round(warmup * batches) if warmup > 0 else 0
        last_iteration = batches * (trainer.epoch + 1) - 1
        in_warmup = bool(warmup_iterations) and last_iteration <= warmup_iterations
        if in_warmup:
            ok = 1 <= trainer.accumulate <= self.accumulate_target
        else:
            ok = trainer.accumulate == self.accumulate_target
        if not ok:
            raise TrialConfigurationError(
                f"epoch {trainer.epoch + 1}: Ultralytics accumulates {trainer.accumulate} micro-batches, "
                f"expected {'1..' if in_warmup else ''}{self.accumulate_target}"
            )

    def check_batch(self, trainer: Any) -> None:
        """No AutoBatch and no out-of-memory halving: the micro-batch is the one asked."""
        batch = int(self.resolved["batch"])
        if trainer.batch_size != batch or trainer.args.batch != batch:
            raise TrialConfigurationError(
                f"Ultralytics changed the batch size to {trainer.batch_size} (asked {batch}): out-of-memory "
                "halving or AutoBatch; this trial fails instead of running another configuration"
            )

    def check_optimizer(self, trainer: Any) -> None:
        """The optimizer class is the one asked (never ``auto``'s pick)."""
        wanted = str(self.resolved["ultralytics_optimizer"])
        got = type(trainer.optimizer).__name__ if trainer.optimizer is not None else "None"
        if got != wanted:
            raise TrialConfigurationError(f"Ultralytics built optimizer {got}, asked {wanted}")
