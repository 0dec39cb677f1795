"""One Ultralytics run: a trial trained, or resumed, by ``YOLO(model).train(...)`` under hemotune's callbacks.

The callbacks drop Ultralytics' integrations (``patches.py``), check the
configuration it really built (``guards.py``), and after every epoch's
validation report the epoch's metrics with a checkpoint (``checkpoint.py``).
``weights/best.pt`` (last.pt without the optimizer state) is written whenever an
epoch is the best so far by the search objective (``TrialContext.objective`` /
``mode``; by default ``val/mAP50-95``, higher is better).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hemotune.metrics import metric_key
from hemotune.trainers.base import Metrics, Report, TrialContext
from hemotune.trainers.yolo_detection.args import trial_data_yaml, ultralytics_train_args
from hemotune.trainers.yolo_detection.checkpoint import read_checkpoint_state, write_checkpoint
from hemotune.trainers.yolo_detection.guards import ConfigurationGuard
from hemotune.trainers.yolo_detection.params import DEFAULT_OBJECTIVE, PER_CLASS_PREFIX
from hemotune.trainers.yolo_detection.patches import drop_integration_callbacks, ultralytics_session

#: Metrics of the best epoch every summary holds (as ``best/<name>``), besides the objective's.
SUMMARY_METRICS = ("val/mAP50-95", "val/mAP50")


class UltralyticsRun:
    """One trial: builds the model, attaches the guards and the reporter, trains or resumes."""

    def __init__(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> None:
        self.resolved = dict(resolved)
        self.report = report
        self.context = context
        self.workdir = Path(context.workdir).resolve()
        self.save_dir = self.workdir / "ultralytics"
        self.checkpoints = self.workdir / "checkpoints"
        self.best_weights = self.workdir / "weights" / "best.pt"
        self.best = context.best_epoch(DEFAULT_OBJECTIVE, "max")
        self.guard = ConfigurationGuard(self.resolved, self.save_dir)
        self.epochs_done = 0
        self.pending_epoch = False
        self.started = time.monotonic()

    def run(self) -> Metrics:
        """Train (or resume) to ``epochs``; return the summary of the best epoch."""
        from hemotune.offline import configure_ultralytics

        configure_ultralytics()
        self.workdir.mkdir(parents=True, exist_ok=True)
        data_yaml = trial_data_yaml(self.resolved["data"], self.workdir)
        self.guard.expected_data = str(data_yaml)
        if self.context.resume_from is None:
            self._clear_outputs()
            self._train(str(self.resolved["model"]), self._new_run_args(data_yaml))
            return self.summary()
        weights = self._restore(Path(self.context.resume_from))
        if self.epochs_done < int(self.resolved["epochs"]):
            self._train(str(weights), self._resume_args(weights, data_yaml))
        return self.summary()

    def _workers(self) -> int:
        return int(self.resolved.get("workers", self.context.num_workers))

    def _new_run_args(self, data_yaml: Path) -> dict[str, Any]:
        return ultralytics_train_args(
            self.resolved,
            data_yaml=data_yaml,
            save_dir=self.save_dir,
            device=self.context.device,
            workers=self._workers(),
        )

    def _resume_args(self, weights: Path, data_yaml: Path) -> dict[str, Any]:
        """Ultralytics resumes with the checkpoint's own arguments: these are the ones it lets a resume
        change, and the ones that hold paths of the machine the checkpoint came from."""
        return {
            "resume": str(weights),
            "data": str(data_yaml),
            "save_dir": str(self.save_dir),
            "device": self.context.device,
            "workers": self._workers(),
        }

    def _train(self, source: str, kwargs: Mapping[str, Any]) -> None:
        with ultralytics_session():
            from ultralytics import YOLO

            model = YOLO(source, task="detect")
            for event, callback in self._callbacks().items():
                model.add_callback(event, callback)
            model.train(**kwargs)

    def summary(self) -> Metrics:
        """``best/<metric>`` of the best epoch (the objective's among them) and the run's bookkeeping."""
        return {
            **self.best.summary((*SUMMARY_METRICS, self.best.metric)),
            "best_epoch": float(self.best.epoch),
            "epochs_completed": float(self.epochs_done),
            "train_seconds": time.monotonic() - self.started,
            "effective_batch": float(self.resolved["effective_batch"]),
            "lr0": float(self.resolved["lr0"]),
        }

    def _restore(self, checkpoint: Path) -> Path:
        """Check a reported checkpoint against this trial; copy what Ultralytics needs into the workdir."""
        state = read_checkpoint_state(checkpoint, self.resolved)
        self.epochs_done = int(state["epoch"])
        self.best.restore(state["best"])
        local = self.workdir / "resume"
        if local.resolve() != checkpoint.resolve():
            if local.exists():
                shutil.rmtree(local)
            shutil.copytree(checkpoint, local)  # first: the checkpoint may lie in the folders cleared next
        self._clear_outputs()
        if (local / "results.csv").is_file():  # Ultralytics appends the resumed epochs to it
            self.save_dir.mkdir(parents=True)
            shutil.copyfile(local / "results.csv", self.save_dir / "results.csv")
        return local / "last.pt"

    def _clear_outputs(self) -> None:
        """Remove Ultralytics' run folder and checkpoints left by an earlier attempt of this trial."""
        for folder in (self.save_dir, self.checkpoints):
            if folder.exists():
                shutil.rmtree(folder)

    def _callbacks(self) -> dict[str, Callable[[Any], None]]:
        return {
            "on_pretrain_routine_start": self._on_pretrain_routine_start,
            "on_pretrain_routine_end": self._on_pretrain_routine_end,
            "on_train_epoch_start": self._on_train_epoch_start,
            "on_train_epoch_end": self._on_train_epoch_end,
            "on_fit_epoch_end": self._on_fit_epoch_end,
        }

    def _on_pretrain_routine_start(self, trainer: Any) -> None:
        """In the trainer's __init__, right after Ultralytics added its integration callbacks: drop them."""
        drop_integration_callbacks(trainer)
        self.guard.check_paths(trainer)

    def _on_pretrain_routine_end(self, trainer: Any) -> None:
        self.guard.check_setup(trainer)

    def _on_train_epoch_start(self, trainer: Any) -> None:
        """Also runs again when Ultralytics restarts an epoch after halving the batch on out-of-memory."""
        self.guard.check_batch(trainer)
        self.guard.check_optimizer(trainer)

    def _on_train_epoch_end(self, trainer: Any) -> None:
        self.guard.check_batch(trainer)
        self.guard.check_accumulation(trainer)
        self.pending_epoch = True

    def _on_fit_epoch_end(self, trainer: Any) -> None:
        """After validation and saving. Ultralytics' final best.pt validation (no training) is skipped."""
        if not self.pending_epoch:
            return
        self.pending_epoch = False
        epoch = int(trainer.epoch) + 1
        metrics = epoch_metrics(trainer, epoch)
        artifacts: dict[str, Path] = {}
        if self.best.update(epoch, metrics):
            self.best_weights.parent.mkdir(parents=True, exist_ok=True)
            save_inference_weights(Path(trainer.last), self.best_weights)
            artifacts["weights/best.pt"] = self.best_weights
        self.epochs_done = epoch
        checkpoint = write_checkpoint(
            self.checkpoints,
            epoch,
            last=Path(trainer.last),
            results_csv=Path(trainer.csv),
            resolved=self.resolved,
            best=self.best.state(),
        )
        self.report(metrics, checkpoint=checkpoint, artifacts=artifacts)


def save_inference_weights(last: Path, target: Path) -> None:
    """This epoch's model for inference: last.pt without the optimizer state (half its size)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    if not strip_optimizer(last, str(target)):
        shutil.copyfile(last, target)


def validator_metrics(
    results: Mapping[str, Any], box: Any, names: Mapping[int, str], split: str = "val"
) -> dict[str, float]:
    """mAP50-95, mAP50, P, R and AP50 per class of one Ultralytics validation, as ``<split>/<name>``.

    Training's epoch reports and ``evaluate`` both read a validation this way, so
    their metric names and values agree. A class without labels in the split has
    no AP50 (Ultralytics' ``ap_class_index`` holds the classes present).
    """
    per_class = f"{split}/" + PER_CLASS_PREFIX.removeprefix("val/")
    out: dict[str, float] = {
        f"{split}/mAP50-95": float(results["metrics/mAP50-95(B)"]),
        f"{split}/mAP50": float(results["metrics/mAP50(B)"]),
        f"{split}/precision": float(results["metrics/precision(B)"]),
        f"{split}/recall": float(results["metrics/recall(B)"]),
    }
    for i, class_index in enumerate(box.ap_class_index):
        out[per_class + metric_key(str(names[int(class_index)]))] = float(box.ap50[i])
    return out


def epoch_metrics(trainer: Any, epoch: int) -> dict[str, float]:
    """What one epoch reports, read from the Ultralytics trainer after validation (MLflow-safe names)."""
    results = trainer.metrics
    out: dict[str, float] = {"epoch": float(epoch)}
    out.update(validator_metrics(results, trainer.validator.metrics.box, trainer.data["names"]))
    out.update({metric_key(k): float(v) for k, v in results.items() if k.startswith("val/")})
    losses = trainer.label_loss_items(trainer.tloss, "train")
    out.update({metric_key(k): float(v) for k, v in losses.items()})
    out["lr"] = float(trainer.optimizer.param_groups[0]["lr"])
    out["accumulate_steps"] = float(trainer.accumulate)
    out["effective_batch"] = float(trainer.batch_size * trainer.accumulate)
    out["epoch_seconds"] = float(trainer.epoch_time or 0.0)
    return out
