"""``hemotune evaluate --resume``: an evaluation interrupted (SIGINT) mid-way finishes without rerunning a run.

Real processes: the search in-process, the first evaluation as a ``hemotune`` subprocess
interrupted once two of its four runs have finished (and Tune has saved that), the resume
in-process; real Ray, real MLflow. The subprocess tree is ended by PID.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from helpers import Driver, search_tree, synthetic_space_file, wait_until

from hemotune.cli import main

EPOCHS = 3


def _rows(results: Path) -> dict[str, list[dict]]:
    """evaluation trial dir -> the rows Tune recorded (a rerun trial would record more)."""
    return {
        p.parent.name: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        for p in results.glob("*/evaluation-*/*/result.json")
    }


def _finished(results: Path) -> set[str]:
    """Evaluation trials whose test metrics Tune has recorded (the last row of a finished run)."""
    return {t for t, rows in _rows(results).items() if rows and "test/score" in rows[-1]}


@pytest.mark.slow
def test_an_interrupted_evaluation_resumes_without_rerunning_a_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = synthetic_space_file(
        tmp_path,
        name="eval_resume",
        budget={"num_samples": 2, "epochs": 1, "grace_period": 1, "max_concurrent": 2},
        fixed={"best_lr": 0.01, "rate": 0.6, "seconds_per_epoch": 1.0},  # evaluation runs of about 3 s
    )
    results = tmp_path / "results"
    common = ["--results-dir", str(results), "--num-cpus", "2"]
    assert main(["search", str(space), "--no-progress", *common]) == 0
    test_set = tmp_path / "test_set"
    test_set.mkdir()
    (test_set / "images.txt").write_text("synthetic test images\n")
    argv = ["evaluate", "eval_resume", "--top", "1", "--seeds", "2", "--epochs", str(EPOCHS)]
    argv += ["--test", str(test_set), *common]
    first = Driver(argv, cwd=tmp_path)
    try:
        assert wait_until(lambda: len(_finished(results)) >= 2, timeout=120, interval=0.3, driver=first), (
            first.output()
        )
        assert first.proc.poll() is None, (
            "the evaluation ended before it could be interrupted: " + first.output()
        )
        first.snapshot()
        first.proc.send_signal(signal.SIGINT)
        code = first.wait(timeout=120)
    finally:
        first.cleanup()
    assert code == 130, first.output()
    assert "evaluation interrupted" in first.output() and "--resume" in first.output()
    before = _rows(results)
    done_before = _finished(results)
    assert 2 <= len(done_before) < 4, before
    plan = json.loads(next(results.glob("eval_resume-*/evaluation-*/hemotune_evaluation.json")).read_text())
    assert plan["status"] == "interrupted"

    capsys.readouterr()
    assert main(["evaluate", "eval_resume", "--resume", *common]) == 0
    out = capsys.readouterr().out
    assert "paired bootstrap over 200 test images" in out
    after = _rows(results)
    assert len(list(results.glob("eval_resume-*/evaluation-*"))) == 1  # the same evaluation, continued
    assert len(after) == 4 and _finished(results) == set(after)
    for trial in done_before:
        assert after[trial] == before[trial], f"{trial} was run again"
    _, children = search_tree(f"sqlite:///{results / 'mlflow.db'}", "eval_resume")
    evaluation = [c for c in children if c.data.tags["hemotune.role"] == "evaluation"]
    assert len(evaluation) == 4 and all(c.info.status == "FINISHED" for c in evaluation)
    assert len({c.data.tags["hemotune.trial_id"] for c in evaluation}) == 4  # no run duplicated
    doc = json.loads(next(results.glob("eval_resume-*/evaluation.json")).read_text())
    assert doc["finished"] is True
    assert all(set(arm["per_seed"]) == {"7", "8"} for arm in doc["arms"].values())
