"""The detection guards hit by real Ultralytics runs: a trial runs what it reports, or fails naming the value.

Every test here trains (or starts to train) YOLO11n from scratch with real
Ultralytics on 12 BCCD images at 64 px on CPU, and lets Ultralytics' own code
change the configuration: its out-of-memory retry halves the batch, AutoBatch
picks one, ``optimizer=auto`` picks another optimizer. The guards
(``hemotune.trainers.yolo_detection.guards``) must then fail the trial with a
``TrialConfigurationError`` naming the asked value and the one Ultralytics chose,
before an epoch is reported. The accumulation cap (a run with fewer micro-batches
in all than ``accumulate_steps``) is tested on a real run in test_detection_trainer.py
(``test_a_run_too_short_for_its_accumulation_fails_the_trial``); here its edge:
exactly as many micro-batches as one step needs trains as asked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hemotune.errors import TrialConfigurationError
from hemotune.trainers import TrialContext, get_trainer
from hemotune.trainers.yolo_detection import YoloDetectionTrainer
from hemotune.trainers.yolo_detection import run as run_module

pytestmark = pytest.mark.slow

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


@pytest.fixture(scope="module")
def trainer() -> YoloDetectionTrainer:
    found = get_trainer("yolo_detection")
    assert isinstance(found, YoloDetectionTrainer)
    return found


@pytest.fixture(scope="module")
def tiny_bccd(bccd_dir: Path, cache_dir: Path) -> str:
    """12 train and 6 val BCCD images, converted once (the same cache entry as test_detection_trainer.py's)."""
    prepared = get_trainer("yolo_detection").prepare_data(
        {
            "path": str(bccd_dir),
            "format": "voc",
            "classes": BCCD_CLASSES,
            "max_train_images": 12,
            "max_val_images": 6,
        },
        {},
        cache_dir,
    )
    return str(prepared.path)


class Reports:
    """A ``report`` that keeps every epoch's metrics."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def __call__(
        self,
        metrics: Mapping[str, float],
        *,
        checkpoint: Path | None = None,
        artifacts: Mapping[str, Path] | None = None,
    ) -> None:
        self.metrics.append(dict(metrics))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def ultralytics_warnings() -> Iterator[list[str]]:
    """What Ultralytics' own logger warns during the test (it does not propagate to the root logger)."""
    from hemotune.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics.utils import LOGGER

    handler = _Records()
    LOGGER.addHandler(handler)
    try:
        yield handler.messages
    finally:
        LOGGER.removeHandler(handler)


def _params(data: str, **overrides: Any) -> dict[str, Any]:
    return {"imgsz": 64, "batch": 4, "accumulate_steps": 2, "epochs": 2, "seed": 0, "data": data, **overrides}


def _context(workdir: Path) -> TrialContext:
    return TrialContext(workdir=workdir, device="cpu", seed=0)


def _hand_ultralytics(monkeypatch: pytest.MonkeyPatch, **changed: Any) -> None:
    """Change what the run hands ``YOLO.train`` (not the resolved parameters the guards check against)."""
    real = run_module.ultralytics_train_args

    def changed_args(resolved: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {**real(resolved, **kwargs), **changed}

    monkeypatch.setattr(run_module, "ultralytics_train_args", changed_args)


def _assert_failed_before_any_epoch(report: Reports, workdir: Path) -> None:
    assert report.metrics == []
    assert not (workdir / "checkpoints").exists() and not (workdir / "weights").exists()


def test_out_of_memory_batch_halving_fails_the_trial_naming_the_batch(
    trainer: YoloDetectionTrainer,
    tiny_bccd: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ultralytics_warnings: list[str],
) -> None:
    """Ultralytics' real out-of-memory retry halves batch 4 to 2; the trial fails naming both.

    Why this path: ``BaseTrainer._do_train`` catches a ``RuntimeError`` whose text has
    "out of memory" around the forward/backward of a training step, and in the first
    epoch halves ``args.batch`` / ``batch_size``, rebuilds the dataloaders and restarts
    the epoch. A real allocator failure cannot be had on CPU (torch's CPU allocator
    says "not enough memory", which Ultralytics re-raises), so the first real loss
    computation of the run (``BaseModel.loss``, inside that try block) raises the
    ``torch.OutOfMemoryError`` a GPU would; everything after it is Ultralytics' own
    code: the halving, the rebuilt loaders, the restarted epoch, whose
    ``on_train_epoch_start`` guard then fails the trial.
    """
    import torch
    from ultralytics.nn.tasks import BaseModel

    real_loss = BaseModel.loss
    steps: list[int] = []

    def loss_out_of_memory_once(self: Any, batch: dict[str, Any], preds: Any = None) -> Any:
        if not steps:
            steps.append(int(batch["img"].shape[0]))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_loss(self, batch, preds)

    monkeypatch.setattr(BaseModel, "loss", loss_out_of_memory_once)
    report = Reports()
    workdir = tmp_path / "trial"
    with pytest.raises(TrialConfigurationError, match=r"changed the batch size to 2 \(asked 4\)"):
        trainer.fit(_params(tiny_bccd), report, _context(workdir))
    assert steps == [4]  # the step that ran out of memory ran the asked batch
    assert any("Reducing to batch=2" in message for message in ultralytics_warnings), ultralytics_warnings
    _assert_failed_before_any_epoch(report, workdir)


def test_autobatch_fails_the_trial_naming_the_batch(
    trainer: YoloDetectionTrainer,
    tiny_bccd: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ultralytics_warnings: list[str],
) -> None:
    """``batch=-1`` reaches Ultralytics (hemotune never passes it: ``batch >= 1``); its AutoBatch picks 16.

    Ultralytics' real ``auto_batch`` runs (on CPU it falls back to its default batch 16);
    the trial asked for 4 and fails at ``on_pretrain_routine_end``, before training.
    """
    _hand_ultralytics(monkeypatch, batch=-1)
    report = Reports()
    workdir = tmp_path / "trial"
    with pytest.raises(TrialConfigurationError, match=r"changed the batch size to 16 \(asked 4\)"):
        trainer.fit(_params(tiny_bccd), report, _context(workdir))
    assert any("AutoBatch" in message for message in ultralytics_warnings), ultralytics_warnings
    _assert_failed_before_any_epoch(report, workdir)


def test_another_optimizer_built_by_ultralytics_fails_the_trial_naming_it(
    trainer: YoloDetectionTrainer, tiny_bccd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trial asks for SGD; ``optimizer=auto`` reaches Ultralytics, whose ``build_optimizer`` picks AdamW.

    ``auto`` is the one path where Ultralytics builds another class than the name it
    is given (below 10000 iterations: AdamW, with its own lr0); hemotune rejects
    ``auto`` in the space, so it is handed to ``YOLO.train`` behind the resolved
    parameters' back, which is what an Ultralytics default or renaming would do.
    """
    _hand_ultralytics(monkeypatch, optimizer="auto")
    report = Reports()
    workdir = tmp_path / "trial"
    resolved = trainer.resolve(_params(tiny_bccd))
    assert resolved["ultralytics_optimizer"] == "SGD"
    with pytest.raises(TrialConfigurationError, match="Ultralytics built optimizer AdamW, asked SGD"):
        trainer.fit(_params(tiny_bccd), report, _context(workdir))
    _assert_failed_before_any_epoch(report, workdir)


def test_a_run_with_exactly_the_micro_batches_of_one_step_trains_as_asked(
    trainer: YoloDetectionTrainer, tiny_bccd: str, tmp_path: Path
) -> None:
    """12 images at batch 8 are 2 micro-batches per epoch, 4 in 2 epochs: ``accumulate_steps`` 4 is not capped."""
    report = Reports()
    summary = trainer.fit(
        _params(tiny_bccd, batch=8, accumulate_steps=4), report, _context(tmp_path / "trial")
    )
    assert [int(m["epoch"]) for m in report.metrics] == [1, 2]
    last = report.metrics[-1]
    assert last["accumulate_steps"] == 4 and last["effective_batch"] == 32
    assert summary["effective_batch"] == 32 and summary["epochs_completed"] == 2
