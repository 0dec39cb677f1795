"""Ray Tune callbacks run by the driver: live progress in the terminal and prompt run closing.

Both are pickled with the experiment (Ray restores them on ``--resume``), so they
hold only plain data and build their clients and consoles lazily.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback

from hemotune.config import SearchSpace
from hemotune.tracking import fail_fast_http


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

    @fail_fast_http()  # runs in Tune's event loop: an unreachable server must not stall the search
    def _close(self, trial: Any, status: str, outcome: str) -> None:
        from hemotune.tracking import TAG_OUTCOME, client_for, find_child_run

        try:
            client = client_for(self.tracking_uri)
            run = find_child_run(client, self.experiment_id, self.parent_run_id, trial.trial_id)
            if run is None:
                return
            client.set_tag(run.info.run_id, TAG_OUTCOME, outcome)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status)
        except Exception:  # reconciliation at the end of the search retries this
            return

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FINISHED", "completed or stopped early")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED", "failed")


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
        state = self.__dict__.copy()
        state["_progress"] = None
        state["_task"] = None
        return state

    def _bar(self) -> Any:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(highlight=False)
            if not console.is_terminal:  # logs and CI: no 80-column wrapping
                console = Console(highlight=False, width=max(console.width, 160))
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("epochs"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[best]}"),
                transient=False,
                console=console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.name, total=self.total_epochs, best="")
        return self._progress

    def _print(self, text: str) -> None:
        self._bar().console.print(text, highlight=False)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        params = ", ".join(f"{k}={_fmt(trial.config.get(k))}" for k in self.param_names)
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


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt_epoch(epoch: Any) -> str:
    return str(int(epoch)) if isinstance(epoch, (int, float)) else "?"
