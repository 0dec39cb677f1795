"""The HTML of the report's sections: escaped text, plain tables and embedded PNG figures.

Every section is ``<section id=...>`` with an ``<h2>``; the ids (``SECTIONS``) are
what the navigation links to and what the tests look for in the rendered page.
Nothing here refers to anything outside the page: images are ``data:`` URIs.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from hemotune.reports.figures import Figure, png_figure
from hemotune.reports.inputs import ReportInputs
from hemotune.reports.tables import format_value, ranking_rows

#: Section id -> heading, in page order.
SECTIONS = {
    "summary": "Summary",
    "ranking": "Ranked trials",
    "history": "Optimisation history",
    "importances": "Parameter importances",
    "parallel-coordinates": "Parallel coordinates",
    "slices": "Slice plots",
    "learning-curves": "Learning curves",
    "best-trial": "Best trial",
    "results": "Evaluation, ablation and Pareto results",
}


def esc(value: Any) -> str:
    return html.escape(format_value(value) if not isinstance(value, str) else value)


def section(section_id: str, body: str) -> str:
    return f'<section id="{section_id}">\n<h2>{esc(SECTIONS[section_id])}</h2>\n{body}\n</section>'


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], highlight_first: bool = False) -> str:
    """A plain HTML table; ``highlight_first`` marks the first row (the best trial)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        css = ' class="best"' if highlight_first and index == 0 else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{esc(_cell(c))}</td>" for c in row) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def key_values(pairs: Mapping[str, Any]) -> str:
    return table(["", ""], [[k, v] for k, v in pairs.items()]).replace(
        "<thead><tr><th></th><th></th></tr></thead>\n", ""
    )


def figure(fig: Figure, caption: str) -> str:
    """An embedded PNG with its caption, or the note saying why it is missing."""
    if fig.png is None:
        return f'<p class="note">{esc(caption)}: {esc(fig.note)}</p>'
    return (
        f'<figure><img src="data:image/png;base64,{fig.png}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _cell(value: Any) -> Any:
    """A table cell: scalars as they are, lists of scalars joined, anything nested as compact JSON."""
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (Mapping, list)) for v in value):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return "-" if value is None else value


def summary_section(inputs: ReportInputs) -> str:
    """What was searched, on which data, with what budget, how long it took and how trials ended."""
    space, state, run = inputs.space, inputs.state, inputs.run
    tags = run.tags if run else {}
    search = {
        "search": f"{space.name}: {space.description}" if space.description else space.name,
        "space file": space.source,
        "preset / overrides": " ".join(filter(None, [space.preset or "", *space.overrides])) or "-",
        "trainer": space.trainer,
        "objective": f"{space.objective.metric} ({space.objective.mode})",
        "seed": space.seed,
        "Tune experiment": inputs.experiment_path,
        "MLflow": f"{inputs.tracking_uri} parent run {run.run_id} ({run.status})" if run else "not read",
        "outcome": tags.get("hemotune.outcome", state.get("status", "-")),
    }
    data = {
        "dataset": state.get("data_path") or tags.get("hemotune.dataset") or space.dataset.path,
        "fingerprint": state.get("dataset_hash") or tags.get("hemotune.dataset_hash", "-"),
        **{f"data: {k}": v for k, v in (run.data_summary if run else {}).items()},
    }
    parts = [
        "<h3>Search</h3>",
        key_values(search),
        "<h3>Data</h3>",
        key_values(data),
        _data_report(inputs),
        "<h3>Budget</h3>",
        key_values(_budget(space)),
        "<h3>Time and trials</h3>",
        key_values({**_times(inputs), **_outcomes(inputs)}),
        "<h3>Versions</h3>",
        key_values(dict(inputs.versions)),
    ]
    return section("summary", "\n".join(parts))


def _data_report(inputs: ReportInputs) -> str:
    """The data report's counts and what preparing the data changed (problem -> action: count)."""
    report = inputs.run.data_report if inputs.run else {}
    if not report:
        return note("no data report logged with this search")
    changes = dict(report.get("summary") or {})
    lines = {f"counted: {k}": v for k, v in dict(report.get("counts") or {}).items()}
    lines.update({f"changed: {k}": v for k, v in changes.items()} or {"changed": "nothing"})
    return "<h4>Data report</h4>\n" + key_values(lines)


def _budget(space: Any) -> dict[str, Any]:
    budget = {**asdict(space.budget), **{f"resources.{k}": v for k, v in asdict(space.resources).items()}}
    search = getattr(space, "search", None)  # sampler / scheduler settings, when the space has them
    if is_dataclass(search) and not isinstance(search, type):
        budget.update({f"search.{k}": v for k, v in asdict(search).items()})
    return budget


def _times(inputs: ReportInputs) -> dict[str, Any]:
    """Wall time of the parent run (start to end, or to now) and the trials' summed training time."""
    run = inputs.run
    found: dict[str, Any] = {"report written": inputs.generated}
    if run and run.start_ms:
        end_ms = run.end_ms or int(time.time() * 1000)
        found["wall time"] = _duration((end_ms - run.start_ms) / 1000.0) + ("" if run.end_ms else " (so far)")
        found["started"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.start_ms / 1000.0))
    trained = sum(float(r.history[-1].get("time_total_s", 0.0) or 0.0) for r in inputs.records if r.history)
    found["trial time (sum over trials)"] = _duration(trained)
    found["epochs trained (sum over trials)"] = sum(t.epochs for t in inputs.ranking)
    return found


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _outcomes(inputs: ReportInputs) -> dict[str, int]:
    """Trials by outcome: completed, stopped early and failed always, interrupted when any."""
    counts = {"completed": 0, "stopped early": 0, "failed": 0}
    for trial in inputs.ranking:
        counts[trial.outcome] = counts.get(trial.outcome, 0) + 1
    return {"trials": len(inputs.ranking), **{f"trials {k}": v for k, v in counts.items()}}


def ranking_section(inputs: ReportInputs, numbers: Mapping[str, int]) -> str:
    """The ranked table of ``hemotune search`` / ranking.md, with each trial's Optuna number."""
    header, rows = ranking_rows(inputs.ranking, inputs.space)
    header = [header[0], "#", *header[1:]]
    numbered = [
        [row[0], str(numbers.get(t.trial_id, "-")), *row[1:]]
        for row, t in zip(rows, inputs.ranking, strict=True)
    ]
    failed = [f"<li>{esc(t.trial_id)}: {esc(t.error)}</li>" for t in inputs.ranking if t.error]
    errors = f"<h3>Failed trials</h3>\n<ul>{''.join(failed)}</ul>" if failed else ""
    caption = note("# is the trial's number in the plots below (the order Tune created the trials).")
    return section(
        "ranking", caption + table(header, numbered, highlight_first=inputs.best is not None) + errors
    )


def best_section(inputs: ReportInputs) -> str:
    """The best trial: its sampled values, its best epoch's metrics, per class, and the confusion matrix."""
    best = inputs.best
    if best is None:
        return section("best-trial", note("no trial reported the objective"))
    overall = {k: v for k, v in best.best_metrics.items() if k.count("/") == 1}
    per_class: dict[str, dict[str, float]] = {}
    for key, value in best.best_metrics.items():
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "val":
            per_class.setdefault(parts[2], {})[parts[1]] = value
    metrics = sorted({m for row in per_class.values() for m in row})
    parts = [
        f"<p>Trial <b>{esc(best.trial_id)}</b>: {esc(inputs.space.objective.metric)} "
        f"<b>{esc(best.best_value)}</b> at epoch {esc(best.best_epoch)} of {best.epochs} ({esc(best.outcome)}).</p>",
        "<h3>Sampled values</h3>",
        key_values(dict(best.params)),
        "<h3>Metrics at its best epoch</h3>",
        key_values(overall),
        '<h3 id="per-class">Per class</h3>',
        table(["class", *metrics], [[c, *[row.get(m) for m in metrics]] for c, row in per_class.items()])
        if per_class
        else note("the trainer reported no per-class metrics"),
        '<h3 id="confusion-matrix">Confusion matrix</h3>',
        _confusion(inputs.best_files),
    ]
    return section("best-trial", "\n".join(parts))


def _confusion(files: Mapping[str, bytes]) -> str:
    """The confusion matrix the trainer logged: its picture and its counts (rows: true class)."""
    parts = []
    if "confusion_matrix.png" in files:
        parts.append(figure(png_figure("confusion", files["confusion_matrix.png"]), "confusion matrix"))
    if "confusion_matrix.json" in files:
        doc = json.loads(files["confusion_matrix.json"])
        classes = [str(c) for c in doc.get("classes", [])]
        rows = [[c, *counts] for c, counts in zip(classes, doc.get("matrix", []), strict=False)]
        parts.append(table(["true \\ predicted", *classes], rows))
    return "\n".join(parts) or note("none logged by the trainer (the classification trainer logs one)")


def results_section(inputs: ReportInputs) -> str:
    """evaluation.json / ablation.json / pareto.json, each as tables of its rows (when present)."""
    if not inputs.results:
        names = ", ".join(f"{n}.json" for n in ("evaluation", "ablation", "pareto"))
        return section("results", note(f"none of {names} in {inputs.local_dir}"))
    parts = [
        f'<h3 id="{esc(name)}">{esc(name)}</h3>\n{json_tables(doc)}' for name, doc in inputs.results.items()
    ]
    return section("results", "\n".join(parts))


def json_tables(doc: Any) -> str:
    """A JSON document as tables: a list of records, a mapping name -> record, scalars as key/values.

    A record's nested mappings become dotted columns (``summary.val/score.mean``), so an arm's
    statistics read as columns rather than as JSON text; a list of scalars is one cell.
    """
    if _records(doc):
        rows = [_flat(r) for r in doc]
        return table(_columns(rows), [_row(r, _columns(rows)) for r in rows])
    if isinstance(doc, Mapping):
        if doc and all(isinstance(v, Mapping) for v in doc.values()):
            flat = {k: _flat(v) for k, v in doc.items()}
            columns = _columns(flat.values())
            return table(["name", *columns], [[k, *_row(v, columns)] for k, v in flat.items()])
        scalars = {k: v for k, v in doc.items() if not _nested(v)}
        nested = [f"<h4>{esc(k)}</h4>\n{json_tables(v)}" for k, v in doc.items() if _nested(v)]
        return "\n".join(([key_values(scalars)] if scalars else []) + nested)
    return f"<pre>{esc(json.dumps(doc, indent=2, default=str))}</pre>"


def _nested(value: Any) -> bool:
    """A mapping, or a list holding anything but scalars: a table of its own."""
    if isinstance(value, Mapping):
        return True
    return isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value)


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings of ``record`` as dotted keys; lists of scalars joined into one cell."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{name}."))
        elif isinstance(value, list) and not _nested(value):
            flat[name] = ", ".join(format_value(v) for v in value)
        else:
            flat[name] = value
    return flat


def _records(doc: Any) -> bool:
    return isinstance(doc, list) and bool(doc) and all(isinstance(r, Mapping) for r in doc)


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _row(record: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    return [record.get(c) for c in columns]
