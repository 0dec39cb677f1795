"""The results layer on a Tune experiment folder written by hand: records, histories, ranking.

``tests/tuning_tests/tuning_tests/test_tuning.py`` checks ``read_trials`` against Ray's own
``ExperimentAnalysis`` on a real search; these tests pin down the cases a real
search rarely produces on demand (a result line cut short by a kill, an empty
trial, a failed trial's error file) without starting anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import SYNTHETIC

from hemotune.results import EPOCH_RECORD_FILE, RESULT_FILE, best_row, rank_trials, read_trials
from hemotune.spaces import load_space


def _trial(trial_id: str, status: str, config: dict[str, Any], logdir: str | None) -> str:
    return json.dumps(
        {
            "trial_id": trial_id,
            "status": status,
            "config": config,
            "relative_logdir": logdir,
            "trainable_name": "run_trial",
            "custom_trial_name": f"trial_{trial_id}",
        }
    )


def _experiment(root: Path) -> Path:
    """Three trials: a completed one whose last result line was cut short, a failed one, a pending one."""
    good = root / "trial_a"
    good.mkdir(parents=True)
    rows = [{"epoch": 1, "val/score": 0.2, "trial_id": "a"}, {"epoch": 2, "val/score": 0.5, "trial_id": "a"}]
    (good / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"epoch": 3, "val/sc')
    failed = root / "trial_b"
    failed.mkdir()
    (failed / "result.json").write_text(json.dumps({"epoch": 1, "val/score": 0.7}) + "\n")
    (failed / "error.txt").write_text("Traceback (most recent call last):\n  ...\nRuntimeError: boom\n")
    state = {
        "trial_data": [
            [_trial("a", "TERMINATED", {"lr": 0.1, "other": 1}, "trial_a"), json.dumps({})],
            [_trial("b", "ERROR", {"lr": 0.2}, "trial_b"), json.dumps({"error_filename": "error.txt"})],
            [_trial("c", "RUNNING", {"lr": 0.3}, None), json.dumps({})],
        ]
    }
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    (root / "experiment_state-2026-01-02_00-00-00.json").write_text(json.dumps(state))
    return root


def _one_finished_trial(root: Path, files: dict[str, list[dict[str, Any]]]) -> None:
    """An experiment of one TERMINATED trial ``a`` whose folder holds ``files`` (name -> JSON lines)."""
    folder = root / "trial_a"
    folder.mkdir(parents=True)
    for name, rows in files.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    state = {"trial_data": [[_trial("a", "TERMINATED", {"lr": 0.1}, "trial_a"), json.dumps({})]]}
    (root / "experiment_state-2026-01-02_00-00-00.json").write_text(json.dumps(state))


def test_trials_histories_and_errors_are_read_from_the_newest_snapshot(tmp_path: Path) -> None:
    space = load_space(str(SYNTHETIC), data=str(tmp_path), sets=["budget.epochs=4"])
    records = {r.trial_id: r for r in read_trials(str(_experiment(tmp_path / "exp")), space)}
    assert sorted(records) == ["a", "b", "c"]
    a, b, c = records["a"], records["b"], records["c"]
    # the cut-short third line is skipped; the two whole epochs before it are kept
    assert [row["epoch"] for row in a.history] == [1, 2]
    assert a.config == {"lr": 0.1}  # only searched parameters
    assert a.outcome == "stopped early"  # 2 of 4 epochs
    assert b.outcome == "failed" and b.error == "RuntimeError: boom"
    assert c.status == "PENDING" and c.history == [] and c.outcome == "interrupted"


def test_ranking_uses_each_trials_best_epoch(tmp_path: Path) -> None:
    space = load_space(str(SYNTHETIC), data=str(tmp_path), sets=["budget.epochs=2"])
    records = read_trials(str(_experiment(tmp_path / "exp")), space)
    ranking = rank_trials(records, space, {"a": "run-a"})
    metric = space.objective.metric
    assert metric == "val/score"
    assert [t.trial_id for t in ranking] == ["b", "a", "c"]  # 0.7 > 0.5 > nothing reported
    assert ranking[1].best_value == 0.5 and ranking[1].best_epoch == 2 and ranking[1].run_id == "run-a"
    assert ranking[2].best_value is None
    assert best_row([{"x": 1.0}, {"x": float("nan")}, {"x": 3.0}], "x", "min") == {"x": 1.0}


def test_epochs_a_restored_trial_reported_again_count_once_as_in_mlflow(tmp_path: Path) -> None:
    """Tune appends to result.json: a trial restored from an older checkpoint reports epochs again."""
    root = tmp_path / "exp"
    lost = [{"training_iteration": i, "epoch": i, "val/score": 0.1 * i} for i in range(1, 6)]
    redone = [{"training_iteration": i, "epoch": i, "val/score": 0.1 * i + 0.01} for i in range(4, 9)]
    _one_finished_trial(root, {RESULT_FILE: lost + redone})
    space = load_space(str(SYNTHETIC), data=str(tmp_path), sets=["budget.epochs=8"])
    (record,) = read_trials(str(root), space)
    assert [row["training_iteration"] for row in record.history] == list(range(1, 9))
    # each epoch's first report (the restarted trial's MLflow run keeps those too), then the rest
    assert [row["val/score"] for row in record.history] == [r["val/score"] for r in lost + redone[2:]]
    assert record.outcome == "completed"


def test_epochs_lost_from_the_start_of_result_json_come_from_the_trials_own_record(tmp_path: Path) -> None:
    """A head killed before it uploaded a trial's first epoch: the restored trial's result.json starts at 2.

    CI saw this once (tests/cluster_tests/test_head_loss.py): Tune on the new head wrote the
    file from the restore on. The trial's ``hemotune_epochs.jsonl`` holds epoch 1.
    """
    root = tmp_path / "exp"
    tune_rows = [{"training_iteration": i, "epoch": i, "val/score": 0.1 * i} for i in (2, 3)]
    record_rows = [{"epoch": i, "val/score": 0.1 * i + (0.05 if i == 1 else 0.0)} for i in (1, 2, 3)]
    _one_finished_trial(root, {RESULT_FILE: tune_rows, EPOCH_RECORD_FILE: record_rows})
    space = load_space(str(SYNTHETIC), data=str(tmp_path), sets=["budget.epochs=3"])
    (record,) = read_trials(str(root), space)
    assert [row["epoch"] for row in record.history] == [1, 2, 3]
    assert [row["training_iteration"] for row in record.history] == [1, 2, 3]
    assert [row["val/score"] for row in record.history] == pytest.approx([0.15, 0.2, 0.3])
    assert record.outcome == "completed"
