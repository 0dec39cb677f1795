"""``yolo_detection``: Ultralytics YOLO object detection, one trial = one ``YOLO(model).train(...)``.

``trainer.py`` holds the trainer (see its docstring for how a parameter reaches
Ultralytics), ``params.py`` what it accepts, ``rules.py`` the Ultralytics rules it
mirrors, ``args.py`` the ``YOLO.train`` arguments, ``run.py`` one run,
``checkpoint.py`` its checkpoints, ``guards.py`` and ``patches.py`` the checks and
patches applied to Ultralytics. Importing this package imports no torch/ultralytics.
"""

from __future__ import annotations

from hemotune.trainers.yolo_detection.args import trial_data_yaml, ultralytics_train_args
from hemotune.trainers.yolo_detection.checkpoint import STATE_FILE, checkpoint_epoch
from hemotune.trainers.yolo_detection.params import DEFAULT_OBJECTIVE, DEFAULTS, OPTIMIZERS
from hemotune.trainers.yolo_detection.patches import offline_amp_check
from hemotune.trainers.yolo_detection.rules import (
    accumulation_cap_problem,
    effective_warmup_epochs,
    expected_accumulate,
    learning_rate,
    model_problem,
)
from hemotune.trainers.yolo_detection.trainer import YoloDetectionTrainer

__all__ = [
    "DEFAULTS",
    "DEFAULT_OBJECTIVE",
    "OPTIMIZERS",
    "STATE_FILE",
    "YoloDetectionTrainer",
    "accumulation_cap_problem",
    "checkpoint_epoch",
    "effective_warmup_epochs",
    "expected_accumulate",
    "learning_rate",
    "model_problem",
    "offline_amp_check",
    "trial_data_yaml",
    "ultralytics_train_args",
]
