"""The report's pictures: Optuna's matplotlib plots of the study, rendered to PNG for embedding.

Static images keep ``report.html`` one file that opens offline: matplotlib on its
Agg backend (no display) with its bundled DejaVu Sans font (nothing is looked up
or downloaded). Each figure is a :class:`Figure`: a base64 PNG, or the reason it
could not be drawn (too few trials, one parameter, ...), which the report shows in
its place; a figure that fails never fails the report.

Two plots have no Optuna equivalent and are matplotlib calls on Optuna's axes or on
plain axes: the scheduler's stopping points on Optuna's intermediate-values plot,
and the best-so-far objective against cumulative training epochs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hemotune.reports.study import objective_curve, trial_numbers
from hemotune.results import RankedTrial, TrialRecord, last_epoch

if TYPE_CHECKING:  # pragma: no cover
    import optuna

log = logging.getLogger(__name__)

#: (outcome, marker, colour, legend) of the points where trials ended before their last epoch.
STOP_MARKERS = (("stopped early", "X", "red", "stopped by the scheduler"), ("failed", "P", "black", "failed"))


@dataclass(frozen=True)
class Figure:
    """One picture of the report: a base64 PNG, or the note saying why there is none."""

    title: str
    png: str | None = None
    note: str = ""


@contextlib.contextmanager
def _plotting() -> Iterator[Any]:
    """pyplot on Agg with DejaVu Sans, style changes undone afterwards, Optuna's notices quiet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    with matplotlib.rc_context({"font.family": "DejaVu Sans"}), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield plt


def draw(title: str, plot: Callable[[], Any]) -> Figure:
    """Run ``plot`` (returns axes, an array of axes or a figure) and keep its figure as PNG."""
    with _plotting() as plt:
        before = set(plt.get_fignums())
        try:
            figure = _figure_of(plot())
            figure.set_dpi(96)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
            return Figure(title, png=base64.b64encode(buffer.getvalue()).decode("ascii"))
        except Exception as exc:  # e.g. importances of a study with one completed trial
            log.info("report figure %r not drawn: %s", title, exc)
            return Figure(title, note=f"not drawn: {exc}")
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)


def _figure_of(result: Any) -> Any:
    """The matplotlib figure behind what a plot function returned."""
    import numpy as np

    if hasattr(result, "savefig"):
        return result
    return np.ravel(np.asarray(result, dtype=object))[0].figure


def png_figure(title: str, data: bytes) -> Figure:
    """A PNG file (the confusion matrix a trainer logged) as a report figure."""
    return Figure(title, png=base64.b64encode(data).decode("ascii"))


def study_figures(study: optuna.Study, metric: str, seed: int) -> list[Figure]:
    """Optimisation history, parameter importances, parallel coordinates and slice plots."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as ovm

    evaluator = FanovaImportanceEvaluator(seed=seed)
    history = draw("history", lambda: ovm.plot_optimization_history(study, target_name=metric))
    if not any(t.params for t in study.trials):  # a fixed space (one trial): empty plots, and Optuna warns
        note = "not drawn: the space has no searched parameter"
        return [history, *(Figure(t, note=note) for t in ("importances", "parallel-coordinates", "slices"))]
    return [
        history,
        draw("importances", lambda: ovm.plot_param_importances(study, evaluator=evaluator)),
        draw("parallel-coordinates", lambda: ovm.plot_parallel_coordinate(study, target_name=metric)),
        draw("slices", lambda: ovm.plot_slice(study, target_name=metric)),
    ]


def learning_curves(study: optuna.Study, records: Sequence[TrialRecord], metric: str) -> Figure:
    """Optuna's intermediate values (one curve per trial) with where the scheduler stopped trials."""
    from optuna.visualization import matplotlib as ovm

    def plot() -> Any:
        ax = ovm.plot_intermediate_values(study)
        numbers = trial_numbers(study)
        for record in (r for r in records if r.outcome == "failed"):  # FAIL trials: not in Optuna's plot
            curve = objective_curve(record, metric)
            label = f"Trial{numbers.get(record.trial_id, '?')} (failed)"
            ax.plot(list(curve), list(curve.values()), linestyle=":", marker=".", label=label)
        for outcome, marker, color, label in STOP_MARKERS:
            ends = _last_points(records, metric, outcome)
            if ends:
                xs, ys = zip(*ends, strict=True)
                ax.scatter(xs, ys, marker=marker, color=color, s=70, zorder=5, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, ncol=1 + len(handles) // 24)
        return ax

    return draw("learning-curves", plot)


def _last_points(records: Sequence[TrialRecord], metric: str, outcome: str) -> list[tuple[int, float]]:
    """(last epoch, value there) of each trial with ``outcome`` that reported the objective."""
    points = []
    for record in records:
        curve = objective_curve(record, metric)
        if record.outcome == outcome and curve:
            epoch = max(curve)
            points.append((epoch, curve[epoch]))
    return points


def history_by_epochs(
    records: Sequence[TrialRecord], ranking: Sequence[RankedTrial], metric: str, mode: str
) -> Figure:
    """Each trial's objective and the best so far against the training epochs spent (trials by end time)."""
    import numpy as np

    def plot() -> Any:
        import matplotlib.pyplot as plt

        # failed trials spent epochs but have no objective (as in Optuna's history, where they are FAIL)
        values = {t.trial_id: t.best_value for t in ranking if t.outcome != "failed"}
        ordered = sorted(records, key=_end_time)
        epochs = np.cumsum([last_epoch(r.history) for r in ordered])
        scores = np.array([np.nan if values.get(r.trial_id) is None else values[r.trial_id] for r in ordered])
        best = (np.fmax if mode == "max" else np.fmin).accumulate(scores)
        _, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.scatter(epochs, scores, label="objective of the trial (best epoch)")
        ax.step(epochs, best, where="post", color="red", label="best so far")
        ax.set_xlabel("cumulative training epochs (trials in the order they ended)")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        return ax

    return draw("history-epochs", plot)


def _end_time(record: TrialRecord) -> float:
    """When a trial reported its last result (Tune's ``timestamp``; trials without one go first)."""
    stamps = [float(r["timestamp"]) for r in record.history if isinstance(r.get("timestamp"), (int, float))]
    return max(stamps, default=0.0)


def by_title(figures: Sequence[Figure]) -> Mapping[str, Figure]:
    return {f.title: f for f in figures}
