"""A search interrupted mid-way (SIGINT, and SIGKILL of the driver) finishes with ``--resume``.

Real processes: the ``hemotune`` CLI as a subprocess, a real local Ray, real MLflow.
Everything started is ended by PID at the end of each test.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from helpers import Driver, epoch_steps, search_tree, synthetic_space_file, wait_until

NUM_SAMPLES = 6
EPOCHS = 4


def _space(tmp_path: Path, name: str) -> Path:
    return synthetic_space_file(
        tmp_path,
        name=name,
        fixed={"seconds_per_epoch": 0.6},
        budget={
            "num_samples": NUM_SAMPLES,
            "max_concurrent": 2,
            "epochs": EPOCHS,
            "grace_period": EPOCHS,
            "reduction_factor": 2,
        },
    )


def _finished_children(uri: str, name: str) -> int:
    _, children = search_tree(uri, name)
    return sum(1 for r in children if r.info.status == "FINISHED")


def _result_lines(results: Path) -> dict[str, int]:
    """trial dir -> number of results Tune recorded (a re-run trial would record more)."""
    return {p.parent.name: len(p.read_text().splitlines()) for p in results.glob("*/trial_*/result.json")}


def _experiment_state(results: Path) -> dict:
    state_file = next(results.glob("*/hemotune_search.json"))
    return json.loads(state_file.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path: Path, sig: int) -> None:
    name = f"resume_{sig.name.lower()}"
    space = _space(tmp_path, name)
    results = tmp_path / "results"
    uri = f"sqlite:///{results / 'mlflow.db'}"
    args = ["search", str(space), "--results-dir", str(results), "--num-cpus", "2", "--no-progress"]
    first = Driver(args, cwd=tmp_path)
    try:
        assert wait_until(lambda: "mlflow: sqlite" in first.output(), timeout=60, driver=first), (
            first.output()
        )
        # Two trials finished, and Tune has synced that to storage (it does every 5 s).
        assert wait_until(lambda: _finished_children(uri, name) >= 2, timeout=240, driver=first), (
            first.output()
        )
        assert wait_until(
            lambda: sum(n == EPOCHS for n in _result_lines(results).values()) >= 2, timeout=60, driver=first
        ), first.output()
        assert first.proc.poll() is None, "the search ended before it could be interrupted"
        first.snapshot()
        first.proc.send_signal(sig)
        code = first.wait(timeout=120)
    finally:
        first.cleanup()
    if sig == signal.SIGINT:
        assert code == 130, first.output()
        assert "--resume" in first.output()
        assert _experiment_state(results)["status"] == "interrupted"
        parent, children = search_tree(uri, name)
        assert parent.info.status == "KILLED"
        assert all(r.info.status != "RUNNING" for r in children)
    else:
        assert code == -signal.SIGKILL
    before = _result_lines(results)
    finished_before = {t for t, n in before.items() if n == EPOCHS}
    assert len(finished_before) >= 2

    second = Driver([*args, "--resume"], cwd=tmp_path)
    try:
        code = second.wait(timeout=300)
    finally:
        second.cleanup()
    assert code == 0, second.output()
    assert "resuming" in second.output()

    after = _result_lines(results)
    for trial in finished_before:
        assert after[trial] == EPOCHS, f"{trial} was re-run"
    assert len(after) == NUM_SAMPLES
    assert all(n == EPOCHS for n in after.values()), after

    parent, children = search_tree(uri, name)
    assert parent.info.status == "FINISHED"
    assert _experiment_state(results)["status"] == "finished"
    trial_ids = [r.data.tags["hemotune.trial_id"] for r in children]
    assert len(trial_ids) == NUM_SAMPLES and len(set(trial_ids)) == NUM_SAMPLES  # one run per trial
    assert {f"trial_{t}" for t in trial_ids} == set(after)
    for run in children:
        assert run.info.status == "FINISHED", run.info.run_name
        assert epoch_steps(uri, run.info.run_id) == list(range(1, EPOCHS + 1)), run.info.run_name
