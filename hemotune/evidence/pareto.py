"""The Pareto front of a multi-objective search: ``pareto.json`` and its table.

Which values: each trial's *final reported epoch*, the values Ray's OptunaSearch tells
the Optuna study when the trial ends (a trial ASHA stopped early is told its last
epoch's values). The front is therefore the study's own ``study.best_trials``, the one
``optuna-dashboard`` shows for the search's journal. Trials that failed or never
finished are not in the study as completed, so not here either.

The non-dominated set is Optuna's: the candidates are added to an in-memory study with
the search's directions and ``study.best_trials`` picks them (Optuna 5 has no public
function over bare values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: The rule, written into ``pareto.json`` so a reader knows which values were compared.
RULE = (
    "non-dominated trials (Optuna study.best_trials) over each completed trial's final "
    "reported epoch, the values the Optuna study was told"
)


def non_dominated(values: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (``modes``: ``max``/``min`` per objective)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize" if m == "max" else "minimize" for m in modes])
    for index, point in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                values=[float(v) for v in point], params={}, distributions={}, user_attrs={"index": index}
            )
        )
    return sorted(int(trial.user_attrs["index"]) for trial in study.best_trials)


def pareto_document(
    search: str, objectives: Sequence[Mapping[str, str]], candidates: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``pareto.json``: the objectives, the rule, and the Pareto-optimal candidates, best first by the first.

    ``candidates``: ``{trial_id, run_id, epoch, values: {metric: value}, params}`` of every
    completed trial; those missing a finite value of some objective are left out.
    """
    metrics = [o["metric"] for o in objectives]
    modes = [o["mode"] for o in objectives]
    usable = [c for c in candidates if all(_finite(c["values"].get(m)) for m in metrics)]
    front = [usable[i] for i in non_dominated([[c["values"][m] for m in metrics] for c in usable], modes)]
    sign = -1.0 if modes[0] == "max" else 1.0
    front.sort(key=lambda c: (sign * float(c["values"][metrics[0]]), str(c["trial_id"])))
    return {
        "search": search,
        "objectives": [dict(o) for o in objectives],
        "rule": RULE,
        "trials_considered": len(usable),
        "front": [dict(c) for c in front],
    }


def pareto_markdown(doc: Mapping[str, Any]) -> str:
    """The front as a Markdown table: trial, run, epoch, each objective, the searched values."""
    metrics = [o["metric"] for o in doc["objectives"]]
    names = sorted({name for c in doc["front"] for name in c.get("params", {})})
    header = ["trial", "run", "epoch", *(f"{o['metric']} ({o['mode']})" for o in doc["objectives"]), *names]
    lines = [
        f"## Pareto front of {doc['search']}: {len(doc['front'])} of {doc['trials_considered']} trials",
        "",
        f"Values of each trial's final reported epoch (what the Optuna study was told); {len(metrics)} objectives.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for c in doc["front"]:
        cells = [str(c["trial_id"]), str(c.get("run_id") or "-"), str(c.get("epoch", "-"))]
        cells += [f"{float(c['values'][m]):.4f}" for m in metrics]
        cells += [_text(c.get("params", {}).get(n, "")) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
