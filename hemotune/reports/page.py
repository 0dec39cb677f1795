"""``report.html``: one self-contained page that shows how a search went.

Written at the end of every search (``report_after_search``, called by the tuning
layer) and by ``hemotune report`` (``write_search_report``), into the experiment's
local folder and onto the parent MLflow run as ``report.html``. The page needs
nothing but itself: CSS inline, figures as ``data:`` PNG, no script, and a
Content-Security-Policy that forbids the browser to fetch anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotune.config import SearchSpace
from hemotune.reports import figures, sections
from hemotune.reports.inputs import ReportInputs, gather
from hemotune.reports.study import report_study, trial_numbers

if TYPE_CHECKING:  # pragma: no cover
    from hemotune.tracking import SearchTracking

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
#: Nothing but inline styles and data: images may load (the page makes no request at all).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: "DejaVu Sans", sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 1.5em 3em;
       color: #222; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc; padding: .5em 0; }
nav a { margin-right: 1em; color: #1f5c99; text-decoration: none; font-size: .9em; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 2px solid #1f5c99; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eef3f8; } tr.best td { background: #e3f4e3; font-weight: bold; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: .85em; }
"""


def render(inputs: ReportInputs) -> str:
    """The whole page for ``inputs`` (Optuna study, figures and sections)."""
    space = inputs.space
    metric, mode = space.objective.metric, space.objective.mode
    study = report_study(inputs.records, inputs.ranking, space)
    drawn = figures.by_title(figures.study_figures(study, metric, space.seed))
    by_epochs = figures.history_by_epochs(inputs.records, inputs.ranking, metric, mode)
    curves = figures.learning_curves(study, inputs.records, metric)
    body = [
        sections.summary_section(inputs),
        sections.ranking_section(inputs, trial_numbers(study)),
        sections.section(
            "history",
            sections.figure(drawn["history"], f"best-so-far {metric} against trial number")
            + sections.figure(by_epochs, f"best-so-far {metric} against cumulative training epochs"),
        ),
        _plot_section("importances", drawn, f"importance of each parameter for {metric} (fANOVA)"),
        _plot_section("parallel-coordinates", drawn, f"sampled values of each trial, coloured by {metric}"),
        _plot_section("slices", drawn, f"{metric} against each parameter"),
        sections.section(
            "learning-curves",
            sections.figure(
                curves, f"{metric} per epoch of every trial; crosses: where the scheduler stopped it"
            ),
        ),
        sections.best_section(inputs),
        sections.results_section(inputs),
    ]
    return _page(space, inputs, "\n".join(body))


def _plot_section(section_id: str, drawn: Mapping[str, figures.Figure], caption: str) -> str:
    note = sections.note(
        "Trials that completed or were stopped early, at their best epoch; failed ones are left out."
    )
    return sections.section(section_id, note + sections.figure(drawn[section_id], caption))


def _page(space: SearchSpace, inputs: ReportInputs, body: str) -> str:
    nav = " ".join(f'<a href="#{sid}">{sections.esc(title)}</a>' for sid, title in sections.SECTIONS.items())
    title = f"hemotune report: {space.name}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{sections.esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{sections.esc(title)}</h1>
<p class="note">{sections.esc(inputs.experiment_path)} · written {sections.esc(inputs.generated)}</p>
<nav>{nav}</nav>
{body}
</body>
</html>
"""


def write_search_report(
    space: SearchSpace,
    experiment_path: str,
    local_dir: Path,
    tracking: SearchTracking | None,
    state: Mapping[str, Any] | None = None,
    out: Path | None = None,
) -> Path:
    """Write the report of the search at ``experiment_path`` (default ``<local_dir>/report.html``).

    With ``tracking`` the page includes the parent run's times and data report and is
    logged to the parent run as ``report.html`` (replacing an earlier one).
    """
    page = render(gather(space, experiment_path, local_dir, tracking, state))
    target = out or local_dir / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    if tracking is not None:
        tracking.log_text(page, REPORT_FILE)
    return target


def report_after_search(
    space: SearchSpace,
    experiment_path: str,
    local_dir: Path,
    tracking: SearchTracking,
    state: Mapping[str, Any] | None,
) -> Path | None:
    """The end-of-search step: write and log the report; a failure is a warning, never the search's."""
    try:
        return write_search_report(space, experiment_path, local_dir, tracking, state)
    except Exception as exc:
        log.warning("could not write the search report: %s: %s", type(exc).__name__, exc)
        return None
