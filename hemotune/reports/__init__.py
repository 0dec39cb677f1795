"""Presenting a search: the ranked table and exported files, and the self-contained HTML report.

* ``tables``: the ranking as a terminal table and ``ranking.md``, ``best_config.yaml``.
* ``page`` (``write_search_report``, ``report_after_search``): ``report.html``, one file that
  opens offline; ``study`` (an in-memory Optuna study built from Tune's results), ``figures``
  (Optuna's matplotlib plots as embedded PNG) and ``sections`` (the HTML sections) serve it.

Reads results through ``hemotune.results`` (no Ray); MLflow only through ``hemotune.tracking``.
Optuna and matplotlib are imported only when a report is written.
"""

from __future__ import annotations

from hemotune.reports.page import report_after_search, write_search_report
from hemotune.reports.tables import (
    console,
    format_value,
    ranking_markdown,
    ranking_rows,
    ranking_table,
    write_best_config,
)

__all__ = [
    "console",
    "format_value",
    "ranking_markdown",
    "ranking_rows",
    "ranking_table",
    "report_after_search",
    "write_best_config",
    "write_search_report",
]
