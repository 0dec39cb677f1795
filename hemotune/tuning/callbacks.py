"""Ray Tune callbacks run by the driver: live progress, prompt run closing, removal of ended trials' work folders.

Both are pickled with the experiment (Ray restores them on ``--resume``), so they
hold only plain data and build their clients and consoles lazily.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback

from hemotune.config import SearchSpace
from hemotune.reports import console, format_value
from hemotune.tracking import close_trial_run
from hemotune.tuning.workdirs import remove_work_folder


class TrackingCallback(Callback):
    """Closes a trial's MLflow run as soon as Ray Tune ends the trial.

    An ASHA-stopped trial is ended by Ray between two epochs, so its own process
    never reaches ``run.finish()``; the full reconciliation after the search then
    fills in anything still missing.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def _close(self, trial: Any, status: str, outcome: str) -> None:
        """Tag and close the trial's run (see ``hemotune.tracking.close_trial_run``)."""
        close_trial_run(
            self.tracking_uri,
            self.experiment_id,
            self.parent_run_id,
            trial.trial_id,
            status=status,
            outcome=outcome,
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FINISHED", "completed or stopped early")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED", "failed")


class WorkFolderCallback(Callback):
    """Removes the work folder of every trial Ray Tune ends, when it is on the driver's machine.

    A trial that returns or fails removes its own; one that ASHA stops never runs again,
    so its folder (checkpoints, weights) would stay in Ray's session folder for good
    (``hemotune.tuning.workdirs``). A folder on another node stays until that node goes.
    """

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        remove_work_folder(trial.storage.trial_working_directory)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        remove_work_folder(trial.storage.trial_working_directory)


class ProgressCallback(Callback):
    """Rich progress: one bar for the search's epochs, one line per trial event."""

    def __init__(self, space: SearchSpace) -> None:
        self.name = space.name
        self.metric = space.objective.metric
        self.mode = space.objective.mode
        self.total_epochs = space.budget.num_samples * space.budget.epochs
        self.param_names = [p.name for p in space.parameters]
        self._progress: Any = None
        self._task: Any = None
        self._best: float | None = None
        self._done_epochs = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the live progress bar (Ray stores callbacks with the experiment)."""
        state = self.__dict__.copy()
        state["_progress"] = None
        state["_task"] = None
        return state

    def _bar(self) -> Any:
        """The progress bar, started on first use (the callback is built before the search runs)."""
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("epochs"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[best]}"),
                transient=False,
                console=console(),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.name, total=self.total_epochs, best="")
        return self._progress

    def _print(self, text: str) -> None:
        self._bar().console.print(text, highlight=False)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        params = ", ".join(f"{k}={format_value(trial.config.get(k))}" for k in self.param_names)
        self._print(f"[cyan]started[/] {trial.trial_id}: {params}")

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any
    ) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            better = self._best is None or (value > self._best if self.mode == "max" else value < self._best)
            if better:
                self._best = float(value)
        self._done_epochs += 1
        best = "" if self._best is None else f"best {self.metric} {self._best:.4f}"
        self._bar().update(self._task, completed=min(self._done_epochs, self.total_epochs), best=best)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        value = last.get(self.metric)
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        self._print(
            f"[green]ended[/] {trial.trial_id} after epoch {_fmt_epoch(last.get('epoch'))}: {self.metric} {shown}"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._print(f"[red]failed[/] {trial.trial_id} (recorded as failed; the search goes on)")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _fmt_epoch(epoch: Any) -> str:
    """An epoch number for the terminal (``?`` when the trial reported none)."""
    return str(int(epoch)) if isinstance(epoch, (int, float)) else "?"
