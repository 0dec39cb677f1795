"""A trial's local work folder (``<Tune trial working dir>/work``) and its removal once the trial has ended.

A trainer writes everything it needs while training there: Ultralytics' run folder,
per-epoch checkpoints, the best weights, MLflow's pending copies. What must outlive
the trial is already elsewhere by then: checkpoints in Tune's storage, the best
weights and figures in MLflow and in the trial's Tune folder (``durable.py``). Left
in place, these folders pile up in Ray's session folder (``/tmp/ray/session_*/
artifacts``), which Ray never deletes: 1.3 GB for one 8-trial classification search
here, 50 GB after a day of benchmarks and tests. So a trial removes its own folder when it returns or
fails, and the driver removes the folder of every trial Ray ends (ASHA stops a trial
between two epochs, where its own code never runs again) when that folder is on the
driver's machine. ``HEMOTUNE_KEEP_TRIAL_WORKDIRS=1`` keeps them, for debugging a trainer.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from hemotune.config import env_flag

log = logging.getLogger(__name__)

#: The folder a trial's trainer works in, inside the trial's Tune working directory.
WORK_FOLDER = "work"
#: Set to 1 to keep every trial's work folder after the trial ends.
KEEP_ENV = "HEMOTUNE_KEEP_TRIAL_WORKDIRS"


def remove_work_folder(trial_working_dir: str | Path) -> bool:
    """Delete ``<trial_working_dir>/work`` unless asked to keep it; True when a folder was removed."""
    folder = Path(trial_working_dir) / WORK_FOLDER
    if env_flag(KEEP_ENV, default=False) or not folder.is_dir():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        log.warning("could not remove the trial work folder %s", folder)
        return False
    return True
