"""A real multi-objective search on the synthetic trainer ends with its Pareto front, checked by hand.

val/score (max) against val/cost (min, the trial's plateau): a higher plateau scores higher
and costs more, so the front holds several trials.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from helpers import mlflow_client, search_tree, synthetic_space_file
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hemotune.cli import main

OBJECTIVES = [{"metric": "val/score", "mode": "max"}, {"metric": "val/cost", "mode": "min"}]


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` (score, cost) dominates ``b``: no worse in both, better in one (score max, cost min)."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


@pytest.mark.slow
def test_multi_objective_search_ends_with_its_pareto_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = synthetic_space_file(
        tmp_path,
        name="synthetic_pareto",
        objectives=OBJECTIVES,
        fixed={"seconds_per_epoch": 0.0},
        budget={"num_samples": 6, "epochs": 3, "max_concurrent": 2},
    )
    text = space.read_text().replace("objective:\n  metric: val/score\n  mode: max\n", "")
    space.write_text(text)
    results = tmp_path / "results"
    argv = ["search", str(space), "--no-progress", "--results-dir", str(results), "--num-cpus", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "objectives val/score (max), val/cost (min)" in out
    assert "early stopping (asha) on the first, val/score" in out
    assert "## Pareto front of synthetic_pareto:" in out
    assert "| trial | run | epoch | val/score (max) | val/cost (min) |" in out

    uri = f"sqlite:///{results / 'mlflow.db'}"
    parent, children = search_tree(uri, "synthetic_pareto")
    assert len(children) == 6
    # by hand: each child's latest val/score and val/cost (its final reported epoch, what Optuna was told)
    points = {c.info.run_id: (c.data.metrics["val/score"], c.data.metrics["val/cost"]) for c in children}
    front = {r for r, p in points.items() if not any(_dominates(q, p) for q in points.values())}
    assert 2 <= len(front) < 6  # the objectives conflict: a real trade-off, not one winner

    client = mlflow_client(uri)
    local = client.download_artifacts(parent.info.run_id, "pareto.json", str(tmp_path / "dl"))
    doc = json.loads(Path(local).read_text())
    assert doc["objectives"] == OBJECTIVES and doc["trials_considered"] == 6
    assert {c["run_id"] for c in doc["front"]} == front
    for c in doc["front"]:
        assert (c["values"]["val/score"], c["values"]["val/cost"]) == pytest.approx(points[c["run_id"]])
    tagged = {c.info.run_id for c in children if c.data.tags.get("hemotune.pareto") == "true"}
    assert tagged == front
    assert parent.data.tags["hemotune.pareto_size"] == str(len(front))
    local_json = next(results.glob("synthetic_pareto-*/pareto.json"))
    assert json.loads(local_json.read_text())["front"] == doc["front"]
    study = optuna.load_study(  # the search's own journal study agrees: its best_trials are this front
        study_name="hemotune",
        storage=JournalStorage(JournalFileBackend(str(local_json.parent / "optuna_journal.log"))),
    )
    told = [v for values in sorted(tuple(t.values) for t in study.best_trials) for v in values]
    front_values = sorted(tuple(c["values"][o["metric"]] for o in OBJECTIVES) for c in doc["front"])
    assert told == pytest.approx([v for values in front_values for v in values])

    assert main(["best", "synthetic_pareto", "--results-dir", str(results), "--pareto"]) == 0
    listed = capsys.readouterr().out
    assert f"Pareto front, {len(front)} of 6 trials" in listed
    for c in doc["front"]:
        assert c["trial_id"] in listed and f"{c['values']['val/score']:.4f}" in listed
    missing = set(points) - front
    assert not any(run_id in listed for run_id in missing)


def test_a_restored_trial_unknown_to_the_searcher_is_told_every_objective() -> None:
    """The restored-trial fallback of ``ResumableOptunaSearch`` with lists of metrics and modes."""
    import optuna
    from optuna.distributions import FloatDistribution

    from hemotune.tuning.searcher import ResumableOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = ResumableOptunaSearch(
        space={"plateau": FloatDistribution(0.2, 1.0)},
        metric=["val/score", "val/cost"],
        mode=["max", "min"],
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    searcher.on_trial_complete(
        "never-suggested", result={"val/score": 0.7, "val/cost": 0.5, "config/plateau": 0.5}
    )
    searcher.on_trial_complete("no-cost", result={"val/score": 0.9, "config/plateau": 0.9})  # not learnt from
    (trial,) = searcher._ot_study.get_trials()
    assert trial.values == [0.7, 0.5] and trial.params == {"plateau": 0.5}
    assert [d.name for d in searcher._ot_study.directions] == ["MAXIMIZE", "MINIMIZE"]
