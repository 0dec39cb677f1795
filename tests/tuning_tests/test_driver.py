"""A search's driver is recorded while it runs; sync and --resume tell a live driver from a dead one.

No Ray here: the searches are state files written the way ``run_search`` writes them,
the MLflow store a real SQLite file. The SIGKILL of a real driver, ``hemotune sync``
closing its runs and ``--resume`` afterwards are in ``test_resume.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import mlflow_client, synthetic_space_file

from hemotune.cli import main
from hemotune.data.prepared import PreparedData
from hemotune.spaces import load_space
from hemotune.tracking import SearchTracking, TrialRun, TrialRunInfo, child_runs, resolve_tracking_uri
from hemotune.tuning import state as search_state
from hemotune.tuning.driver import ALIVE, GONE, UNKNOWN, driver_record, driver_status

NAME = "driver_test"
EXPERIMENT = f"{NAME}-20260101-000000"


def _record_of_a_finished_process() -> dict:
    code = "import json; from hemotune.tuning.driver import driver_record; print(json.dumps(driver_record()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_a_live_driver_is_alive_and_a_dead_or_reused_pid_is_gone() -> None:
    me = driver_record()
    assert driver_status(me) == ALIVE
    assert driver_status(_record_of_a_finished_process()) == GONE
    if "start_ticks" in me:  # Linux: the same pid started at another time is another process
        assert driver_status({**me, "start_ticks": me["start_ticks"] + 1}) == GONE
    assert driver_status({**me, "host": "another-host"}) == UNKNOWN  # nothing to check from here
    assert driver_status(None) == UNKNOWN


def _search(tmp_path: Path, *, status: str, driver: dict, tracking: SearchTracking) -> tuple[Path, Path]:
    """A search's experiment folder with its state file (and an empty Tune snapshot)."""
    space_file = synthetic_space_file(tmp_path, name=NAME)
    space = load_space(str(space_file))
    results = tmp_path / "results"
    experiment = results / EXPERIMENT
    experiment.mkdir(parents=True)
    data = Path(space.dataset.path)
    prepared = PreparedData(path=data, fingerprint="f" * 64, source=str(data))
    state = search_state.new_state(space, EXPERIMENT, prepared, tracking)
    search_state.write_state(str(experiment), {**state, "status": status, "driver": driver})
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    return space_file, results


def _state(results: Path) -> dict:
    return json.loads((results / EXPERIMENT / search_state.STATE_FILE).read_text())


def test_sync_and_resume_refuse_while_the_driver_is_alive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unreachable tracking URI: reaching MLflow at all would fail with exit 1, not 2.
    unreachable = SearchTracking("http://127.0.0.1:9", "0", "parent")
    me = driver_record()
    space_file, results = _search(tmp_path, status="running", driver=me, tracking=unreachable)
    assert main(["sync", NAME, "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert f"{EXPERIMENT} is still running: its driver (pid {me['pid']} on {me['host']}) is alive" in err
    assert "--force" in err
    # (by its name: the printed resume command names the search, whose file is not in search_spaces/)
    assert main(["search", NAME, "--resume", "--results-dir", str(results), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is still running" in err and "before --resume" in err
    assert main(["search", str(space_file), "--resume", "--results-dir", str(results), "--no-progress"]) == 2
    assert _state(results)["status"] == "running"  # untouched


@pytest.mark.parametrize("driver", ["gone", "elsewhere"])
def test_sync_closes_a_search_whose_driver_is_gone_and_with_force_one_it_cannot_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], driver: str
) -> None:
    uri, artifacts = resolve_tracking_uri(None, tmp_path / "mlflow")
    tracking = SearchTracking.start(
        tracking_uri=uri,
        artifact_location=artifacts,
        experiment_name=NAME,
        run_name=EXPERIMENT,
        tags={"hemotune.search": NAME},
        params={"search": NAME},
    )
    info = TrialRunInfo(uri, tracking.experiment_id, tracking.parent_run_id, NAME, EXPERIMENT, "f" * 64)
    # a trial the killed driver had started after Tune last saved its state: RUNNING, unknown to Tune
    TrialRun(info, trial_id="t1", trial_name="trial_t1").log_epoch({"epoch": 1, "val/score": 0.1})
    record = _record_of_a_finished_process()  # killed, say, with SIGKILL
    if driver == "elsewhere":
        record["host"] = "another-host"
    _, results = _search(tmp_path, status="running", driver=record, tracking=tracking)
    client = mlflow_client(uri)

    force = []
    if driver == "elsewhere":
        assert main(["sync", NAME, "--results-dir", str(results)]) == 2
        assert "cannot be checked from" in capsys.readouterr().err
        assert client.get_run(tracking.parent_run_id).info.status == "RUNNING"
        force = ["--force"]
    assert main(["sync", NAME, "--results-dir", str(results), *force]) == 0
    out = capsys.readouterr().out
    assert f"its driver (pid {record['pid']} on {record['host']}) is gone" in out
    assert f"Continue with `hemotune search {NAME} --resume --results-dir {results}`" in out
    parent = client.get_run(tracking.parent_run_id)
    assert parent.info.status == "KILLED"
    assert parent.data.tags["hemotune.outcome"] == "interrupted"
    assert parent.data.tags["hemotune.resume"] == f"hemotune search {NAME} --resume --results-dir {results}"
    (child,) = child_runs(client, tracking.experiment_id, tracking.parent_run_id)
    assert (child.info.status, child.data.tags["hemotune.outcome"]) == ("KILLED", "interrupted")
    assert _state(results)["status"] == "interrupted"
    assert main(["sync", NAME, "--results-dir", str(results)]) == 0  # closed now: nothing to refuse

    # --resume re-opens the parent run without the outcome of the execution that died
    SearchTracking.reopen(
        tracking_uri=uri, experiment_id=tracking.experiment_id, parent_run_id=tracking.parent_run_id
    )
    parent = client.get_run(tracking.parent_run_id)
    assert parent.info.status == "RUNNING"
    assert "hemotune.outcome" not in parent.data.tags and "hemotune.resume" not in parent.data.tags
