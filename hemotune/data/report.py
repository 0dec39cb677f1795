"""The data report: exactly what preparing a dataset found and changed.

Readers never crash on one bad file and never drop data silently: every
problem becomes an ``Issue`` (path, problem, action taken) and the report is
written next to the prepared data and logged to MLflow with the search.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: What was done about a problem.
ACTIONS = ("clipped", "dropped", "renamed", "kept", "merged", "repaired")


@dataclass(frozen=True)
class Issue:
    path: str
    problem: str
    action: str
    detail: str = ""


@dataclass
class DataReport:
    """Problems found while preparing one dataset, and the resulting counts."""

    source: str
    issues: list[Issue] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    def add(self, path: str | Path, problem: str, action: str, detail: str = "") -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; use one of {ACTIONS}")
        self.issues.append(Issue(str(path), problem, action, detail))

    def summary(self) -> dict[str, int]:
        """Number of issues per ``problem -> action``."""
        return dict(Counter(f"{i.problem} -> {i.action}" for i in self.issues))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts,
            "summary": self.summary(),
            "issues": [asdict(i) for i in self.issues],
        }

    def to_markdown(self) -> str:
        lines = [f"# Data report: {self.source}", ""]
        if self.counts:
            lines += ["## Counts", ""] + [f"- {k}: {v}" for k, v in self.counts.items()] + [""]
        lines += ["## What was changed", ""]
        if not self.issues:
            lines.append("Nothing: every file was used as it is.")
        else:
            lines += [f"- {k}: {v}" for k, v in sorted(self.summary().items())] + ["", "## Every issue", ""]
            lines += ["| path | problem | action | detail |", "|---|---|---|---|"]
            lines += [f"| {i.path} | {i.problem} | {i.action} | {i.detail} |" for i in self.issues]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> Path:
        """Write ``data_report.json`` and ``data_report.md`` into ``folder``; returns the JSON path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data_report.md").write_text(self.to_markdown())
        out = folder / "data_report.json"
        out.write_text(json.dumps(self.to_dict(), indent=2))
        return out


def problems_line(report_path: Path | None, kinds: int = 3) -> str:
    """One terminal line: how many problems preparing the data found and what was done about them.

    The full list goes to the data report (and MLflow); the terminal says that there is one to
    read, with the most frequent kinds first.
    """
    if report_path is None or not Path(report_path).is_file():
        return "data problems: not checked (this trainer writes no data report)"
    summary: dict[str, int] = json.loads(Path(report_path).read_text()).get("summary", {})
    if not summary:
        return "data problems: none found"
    ranked = sorted(summary.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{count} {kind}" for kind, count in ranked[:kinds])
    more = f", {len(ranked) - kinds} more kinds" if len(ranked) > kinds else ""
    total = sum(summary.values())
    return f"data problems: {total} found and handled ({shown}{more}); see data/data_report.md in MLflow"
