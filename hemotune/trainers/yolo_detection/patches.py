"""Ultralytics made offline and quiet for one run: its integrations dropped, its AMP check replaced.

``configure_ultralytics()`` (``hemotune.offline``) runs before Ultralytics is
imported; then, per run, its logger is raised to WARNING (no progress bars), its
integration callbacks (hub/platform, events, MLflow, ...) are removed from each
trainer, and on CUDA its AMP check (which downloads yolo26n.pt) is replaced by
an offline one.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from hemotune.errors import TrialConfigurationError

#: GPUs Ultralytics' AMP check rejects without testing (its own list, ultralytics.utils.checks.check_amp).
_AMP_UNRELIABLE_GPUS = re.compile(
    r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.IGNORECASE
)


def is_allowed_callback(callback: Any) -> bool:
    """Ultralytics' no-op defaults and hemotune's own; not its integrations (platform, events, loggers)."""
    module = getattr(callback, "__module__", "") or ""
    return module == "ultralytics.utils.callbacks.base" or module.startswith("hemotune.")


def drop_integration_callbacks(trainer: Any) -> None:
    """Remove every callback but the allowed ones from an Ultralytics trainer (in place)."""
    for callbacks in trainer.callbacks.values():
        callbacks[:] = [cb for cb in callbacks if is_allowed_callback(cb)]


@contextlib.contextmanager
def ultralytics_session() -> Iterator[None]:
    """Ultralytics logging at WARNING (no progress bars) and its AMP check made offline, for one run."""
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    original_check = trainer_module.check_amp
    LOGGER.setLevel(logging.WARNING)
    trainer_module.check_amp = offline_amp_check
    try:
        yield
    finally:
        trainer_module.check_amp = original_check
        LOGGER.setLevel(level)


def offline_amp_check(model: Any) -> bool:
    """Stand-in for Ultralytics' ``check_amp``, which downloads yolo26n.pt to compare FP32 and AMP outputs.

    Keeps its GPU blacklist but fails the trial instead of silently training
    without AMP (the trial asked for ``amp: true``). CPU and MPS: AMP off, as there.
    """
    device = next(model.parameters()).device
    if device.type in ("cpu", "mps"):
        return False
    if device.type == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(device)
        if _AMP_UNRELIABLE_GPUS.search(gpu):
            raise TrialConfigurationError(
                f"amp: true, but Ultralytics lists {gpu} as giving NaN losses or zero mAP with AMP; "
                "set amp: false"
            )
    return True
