"""``evaluation.md`` and ``ablation.md``: the JSON documents as short Markdown (also printed as is).

Numbers are shown with 4 decimals, differences with their sign; an interval reads
``[low, high]``. The warnings come first: a reader must not miss them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _number(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _interval(estimate: Mapping[str, Any], signed: bool = False) -> str:
    if estimate.get("low") is None:
        return "-"
    return f"[{_number(estimate['low'], signed)}, {_number(estimate['high'], signed)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"]
    return lines + [f"| {' | '.join(row)} |" for row in rows]


def _warnings(doc: Mapping[str, Any]) -> list[str]:
    return [f"**{w}**" for w in doc.get("warnings", [])] + ([""] if doc.get("warnings") else [])


def _per_seed_rows(arms: Mapping[str, Any], metrics: Sequence[str]) -> list[list[str]]:
    rows = []
    for name, arm in arms.items():
        for seed, values in arm["per_seed"].items():
            rows.append([name, seed, *(_number(values.get(m)) for m in metrics)])
    return rows


def _summary_rows(arms: Mapping[str, Any], metrics: Sequence[str]) -> list[list[str]]:
    rows = []
    for name, arm in arms.items():
        for metric in metrics:
            est = arm["summary"].get(metric)
            if est:
                rows.append(
                    [name, metric, str(est["n"]), _number(est["mean"]), _number(est["sd"]), _interval(est)]
                )
    return rows


def _seed_sections(doc: Mapping[str, Any]) -> list[str]:
    metrics = doc["metrics"]
    lines = [
        "## Per seed",
        "",
        *_table(["configuration", "seed", *metrics], _per_seed_rows(doc["arms"], metrics)),
    ]
    lines += ["", "## Mean over seeds (95% t interval)", ""]
    lines += _table(
        ["configuration", "metric", "n", "mean", "sd", "95% CI"], _summary_rows(doc["arms"], metrics)
    )
    return lines


def evaluation_markdown(doc: Mapping[str, Any]) -> str:
    """The evaluation document as Markdown: warnings, per-seed table, summaries, comparisons."""
    lines = [f"# Evaluation: {doc['objective']} ({doc['mode']}), seeds {doc['seeds']}", "", *_warnings(doc)]
    lines += [
        f"- {name}: {arm.get('source', '')} {arm.get('config', '')}".rstrip()
        for name, arm in doc["arms"].items()
    ]
    lines += [
        "",
        *_seed_sections(doc),
        "",
        f"## Compared with the baseline ({doc['baseline']}), paired by seed",
        "",
    ]
    if not doc["comparisons"]:
        lines.append("- nothing to compare: the baseline or every other configuration has no finished run")
    for name, comparison in doc["comparisons"].items():
        lines.append(f"- **{name}** {comparison['verdict']}")
        images = comparison["bootstrap_images"]
        if images.get("available"):
            lines.append(
                f"  - paired bootstrap over {images['images']} test images"
                f"{' of ' + images['statistic'] + ' recomputed' if images.get('statistic') else ''}"
                f", seed {images['seed']}: "
                f"{_number(images['mean'], True)} {_interval(images, True)}"
            )
        else:
            lines.append(f"  - {images['reason']}")
        for metric, est in comparison["differences"].items():
            if metric != doc["objective"]:
                lines.append(f"  - {metric}: {_number(est['mean'], True)} {_interval(est, True)}")
    return "\n".join(lines) + "\n"


def ablation_markdown(doc: Mapping[str, Any]) -> str:
    """The ablation document as Markdown: arms, deltas, additive expectation, synergy."""
    metrics = doc["metrics"]
    lines = [f"# Ablation: {doc['objective']} ({doc['mode']}), seeds {doc['seeds']}", "", *_warnings(doc)]
    lines += _seed_sections(doc)
    lines += ["", f"## Change over {doc['baseline']} (paired by seed, 95% t interval)", ""]
    rows = []
    for name, deltas in doc["deltas"].items():
        for metric in metrics:
            if metric in deltas:
                rows.append(
                    [name, metric, _number(deltas[metric]["mean"], True), _interval(deltas[metric], True)]
                )
    lines += _table(["arm", "metric", "Δ mean", "95% CI"], rows)
    lines += ["", *(f"- {name}: {text}" for name, text in doc["verdicts"].items())]
    first, second = doc["factors"]
    lines += ["", f"## Additive expectation and synergy ({doc['combined']} vs {first} + {second})", ""]
    rows = []
    for metric in metrics:
        syn = doc["synergy"].get(metric, {})
        rows.append(
            [
                metric,
                _number(doc["additive_expectation"].get(metric), True),
                _number(doc["deltas"].get(doc["combined"], {}).get(metric, {}).get("mean"), True),
                _number(syn.get("mean"), True),
                _interval(syn, True) if syn else "-",
            ]
        )
    header = ["metric", f"Δ{first} + Δ{second}", f"Δ{doc['combined']}", "synergy", "95% bootstrap CI"]
    lines += _table(header, rows)
    lines += ["", f"**{doc['synergy_statement']}**"]
    return "\n".join(lines) + "\n"
