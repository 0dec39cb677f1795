"""A search interrupted mid-way (SIGINT, and SIGKILL of the driver) finishes with ``--resume``.

Real processes: the ``hemotune`` CLI as a subprocess, a real local Ray, real MLflow.
Everything started is ended by PID at the end of each test. After a SIGKILL nothing
closes the runs until ``hemotune sync`` does (the driver is provably gone); and the
work a killed driver's trials did and the resumed search ran again is measured
against the bound Tune's state saving gives.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from helpers import Driver, epoch_steps, mlflow_client, search_tree, synthetic_space_file, wait_until
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hemotune.results import read_trials
from hemotune.spaces import load_space
from hemotune.tuning.tuner import CHECKPOINTS_KEPT, DEFAULT_STATE_PERIOD_S

NUM_SAMPLES = 6
EPOCHS = 8
SECONDS_PER_EPOCH = 0.6
#: Epochs a trial can finish between two saves of Tune's state (every 5 s, and as soon as a
#: trial has checkpointed CHECKPOINTS_KEPT times), plus the one whose report was in flight.
MAX_EPOCHS_REDONE = min(math.ceil(float(DEFAULT_STATE_PERIOD_S) / SECONDS_PER_EPOCH), CHECKPOINTS_KEPT) + 1


def _space(tmp_path: Path, name: str) -> Path:
    return synthetic_space_file(
        tmp_path,
        name=name,
        fixed={"seconds_per_epoch": SECONDS_PER_EPOCH},
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


def _rows(trial_dir: Path) -> list[dict]:
    """The rows of a trial's result.json and of its own epoch record (a line cut by the kill skipped)."""
    rows = []
    for name in ("result.json", "hemotune_epochs.jsonl"):
        path = trial_dir / name
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def _stamps(results: Path, trial: str) -> list[float]:
    """The time of every row of a trial's result.json and of its own epoch record."""
    return [float(r["timestamp"]) for r in _rows(next(results.glob(f"*/{trial}")))]


def _experiment_state(results: Path) -> dict:
    state_file = next(results.glob("*/hemotune_search.json"))
    return json.loads(state_file.read_text())


def _running_trial_at(uri: str, name: str, low: int, high: int) -> bool:
    """A trial is RUNNING with between ``low`` and ``high`` epochs logged (far enough to lose work)."""
    _, children = search_tree(uri, name)
    return any(
        r.info.status == "RUNNING" and low <= len(epoch_steps(uri, r.info.run_id)) <= high for r in children
    )


def _sync_closes_the_killed_search(uri: str, name: str, results: Path, cwd: Path, driver_pid: int) -> None:
    """After a SIGKILL everything stays RUNNING; `hemotune sync` closes it all as interrupted."""
    state = _experiment_state(results)
    assert state["status"] == "running" and state["driver"]["pid"] == driver_pid
    parent, _ = search_tree(uri, name)
    assert parent.info.status == "RUNNING"  # nobody closed it: the driver had no chance
    sync = subprocess.run(
        [sys.executable, "-m", "hemotune", "sync", name, "--results-dir", str(results)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "interrupted" in sync.stdout and f"hemotune search {name} --resume" in sync.stdout, sync.stdout
    parent, children = search_tree(uri, name)
    assert parent.info.status == "KILLED"
    assert parent.data.tags["hemotune.outcome"] == "interrupted"
    assert parent.data.tags["hemotune.resume"] == f"hemotune search {name} --resume --results-dir {results}"
    assert all(r.info.status != "RUNNING" for r in children)
    killed = [r for r in children if r.info.status == "KILLED"]
    assert killed and all(r.data.tags["hemotune.outcome"] == "interrupted" for r in killed)
    assert {r.info.status for r in children} == {"FINISHED", "KILLED"}
    assert _experiment_state(results)["status"] == "interrupted"


def _epochs_run_twice(uri: str, name: str, results: Path, killed_at: float) -> tuple[dict, dict, float]:
    """(trial -> epochs its processes finished before ``killed_at`` that the resumed search ran
    again, trial -> epochs finished before the kill, the median epoch length in seconds).

    Finished before the kill: the trial's MLflow epoch entries stamped earlier (a trial logs an
    epoch just before reporting it; a restarted trial does not log an epoch its run has).
    Kept: the rows of Tune's final ``result.json`` and of the trial's own epoch record stamped
    before the kill; later rows were run by the resumed search. Child runs of trials Tune's saved state never knew count too (all
    their epochs are lost); they are deleted at the end, hence ``ViewType.ALL``.
    """
    from mlflow.entities import ViewType

    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`hemotune.role` = 'trial'",
        run_view_type=ViewType.ALL,
        max_results=1000,
    )
    done: dict[str, set[int]] = {}
    lengths: list[float] = []
    for run in runs:
        stamps = sorted(
            (m.step, m.timestamp / 1000) for m in client.get_metric_history(run.info.run_id, "epoch")
        )
        before = [(step, t) for step, t in stamps if t < killed_at]
        done.setdefault(run.data.tags["hemotune.trial_id"], set()).update(step for step, _ in before)
        lengths += [b[1] - a[1] for a, b in itertools.pairwise(before) if b[0] == a[0] + 1]
    kept: dict[str, set[int]] = {}
    for result in results.glob("*/trial_*/result.json"):
        kept[result.parent.name.removeprefix("trial_")] = {
            int(r["epoch"]) for r in _rows(result.parent) if r["timestamp"] < killed_at
        }
    again = {t: sorted(epochs - kept.get(t, set())) for t, epochs in done.items()}
    finished = {t: sorted(epochs) for t, epochs in done.items()}
    return again, finished, statistics.median(lengths)


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
        if sig == signal.SIGKILL:
            # A trial far enough in that losing its saved state would cost more than the bound.
            assert wait_until(
                lambda: _running_trial_at(uri, name, MAX_EPOCHS_REDONE + 2, EPOCHS - 2),
                timeout=120,
                interval=0.2,
                driver=first,
            ), first.output()
        assert first.proc.poll() is None, "the search ended before it could be interrupted"
        first.snapshot()
        first.proc.send_signal(sig)
        code = first.wait(timeout=120)
    finally:
        first.cleanup()
    killed_at = time.time()  # the driver and every process it started are gone
    if sig == signal.SIGINT:
        assert code == 130, first.output()
        assert "--resume" in first.output()
        assert _experiment_state(results)["status"] == "interrupted"
        parent, children = search_tree(uri, name)
        assert parent.info.status == "KILLED"
        assert all(r.info.status != "RUNNING" for r in children)
    else:
        assert code == -signal.SIGKILL
        _sync_closes_the_killed_search(uri, name, results, tmp_path, first.proc.pid)
    before = _result_lines(results)
    # Finished: every epoch in hemotune's reading. Not a count of result.json lines: a driver killed
    # while uploading its folder can leave a finished trial's result.json cut short in storage, which
    # the resumed search continues; hemotune.results fills it from the trial's own epoch record.
    records_before = read_trials(str(next(results.glob(f"{name}-*"))), load_space(str(space)))
    finished_before = {
        f"trial_{r.trial_id}" for r in records_before if r.status == "TERMINATED" and len(r.history) == EPOCHS
    }
    assert len(finished_before) >= 2, (
        before,
        [(r.trial_id, r.status, len(r.history)) for r in records_before],
    )

    second = Driver([*args, "--resume"], cwd=tmp_path)
    try:
        code = second.wait(timeout=300)
    finally:
        second.cleanup()
    assert code == 0, second.output()
    assert "resuming" in second.output()

    after = _result_lines(results)
    for trial in finished_before:  # not re-run: Tune's rows and the trial's own record predate the kill
        stamps = _stamps(results, trial)
        assert stamps and max(stamps) < killed_at, f"{trial} was re-run"
    assert len(after) == NUM_SAMPLES
    # Tune appends to result.json: a trial restored from a checkpoint older than its last line
    # (the kill came between a result and the next save of Tune's state) reports those epochs
    # again, so a restored trial may hold up to MAX_EPOCHS_REDONE more lines; hemotune's
    # results read one row per epoch (its first report, as MLflow keeps it).
    assert all(n <= EPOCHS + MAX_EPOCHS_REDONE for n in after.values()), (after, before)
    cut = sorted(t for t, n in after.items() if n < EPOCHS)
    print(f"\nresult.json files cut short by the kill (filled from hemotune_epochs.jsonl): {cut}")
    records = read_trials(str(next(results.glob(f"{name}-*"))), load_space(str(space)))
    assert len(records) == NUM_SAMPLES
    for record in records:
        assert [row["training_iteration"] for row in record.history] == list(range(1, EPOCHS + 1)), record

    parent, children = search_tree(uri, name)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["hemotune.outcome"] == "finished" and "hemotune.resume" not in parent.data.tags
    assert _experiment_state(results)["status"] == "finished"
    trial_ids = [r.data.tags["hemotune.trial_id"] for r in children]
    assert len(trial_ids) == NUM_SAMPLES and len(set(trial_ids)) == NUM_SAMPLES  # one run per trial
    assert {f"trial_{t}" for t in trial_ids} == set(after)
    for run in children:
        assert run.info.status == "FINISHED", run.info.run_name
        assert epoch_steps(uri, run.info.run_id) == list(range(1, EPOCHS + 1)), run.info.run_name
    # The searcher's Optuna journal outlived the driver: one complete study trial per Tune trial
    # (a trial asked just before a SIGKILL that Tune never recorded may stay RUNNING there).
    journal = next(results.glob(f"{name}-*/optuna_journal.log"))
    study = optuna.load_study(study_name="hemotune", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == NUM_SAMPLES, study.trials

    if sig == signal.SIGKILL:
        again, finished, epoch_s = _epochs_run_twice(uri, name, results, killed_at)
        print(
            f"\nSIGKILL: epochs run again per trial {again}; finished before the kill {finished}; "
            f"epoch {epoch_s:.2f} s; bound {MAX_EPOCHS_REDONE} epochs"
        )
        assert epoch_s >= SECONDS_PER_EPOCH  # the bound assumed epochs at least this long
        # the kill came while a trial that had not finished was past the bound: a search that lost
        # its saved state would have run more than the bound again
        assert any(
            len(epochs) > MAX_EPOCHS_REDONE
            for t, epochs in finished.items()
            if f"trial_{t}" not in finished_before
        )
        assert all(len(epochs) <= MAX_EPOCHS_REDONE for epochs in again.values()), again
