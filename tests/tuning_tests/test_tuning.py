"""Real Ray Tune + Optuna + MLflow searches over the synthetic trainer (curves we control)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import BAD, CURVE_PARAMETERS, FAILING, GOOD, epoch_steps, search_tree, synthetic_space_file

from hemotune.config import RunSettings
from hemotune.offline import CLOSED_LOOPBACK_PROXY, local_ray_env
from hemotune.spaces import load_space
from hemotune.tuning import SearchOutcome, run_search


@pytest.fixture(scope="module")
def asha_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchOutcome, Any, Path]:
    """One sequential search: a good curve, two bad ones, one that fails at epoch 2."""
    tmp = tmp_path_factory.mktemp("asha")
    path = synthetic_space_file(
        tmp,
        name="asha_test",
        fixed={"seconds_per_epoch": 0.0},
        parameters=CURVE_PARAMETERS,
        budget={
            "num_samples": 4,
            "max_concurrent": 1,
            "epochs": 6,
            "grace_period": 1,
            "reduction_factor": 2,
            "max_failures": 0,
        },
        points_to_evaluate=[GOOD, BAD, BAD | {"lr": 2.0e-5}, FAILING],
    )
    space = load_space(str(path))
    settings = RunSettings(
        results_dir=str(tmp / "results"), local_dir=tmp / "results", num_cpus=2, show_progress=False
    )
    outcome = run_search(space, settings)
    return outcome, space, tmp


def test_asha_stops_bad_trials_at_the_grace_period(asha_search: tuple[SearchOutcome, Any, Path]) -> None:
    outcome, space, _ = asha_search
    by_params = {(round(t.params["lr"], 7), t.params["fail_at_epoch"]): t for t in outcome.ranking}
    good = by_params[(0.01, 0)]
    assert good.epochs == space.budget.epochs and good.outcome == "completed"
    for lr in (1.0e-5, 2.0e-5):
        bad = by_params[(lr, 0)]
        assert bad.epochs == space.budget.grace_period, bad
        assert bad.outcome == "stopped early"
    assert outcome.best is not None and outcome.best.trial_id == good.trial_id
    assert not outcome.interrupted


def test_failing_trial_is_recorded_as_failed_and_the_search_goes_on(
    asha_search: tuple[SearchOutcome, Any, Path],
) -> None:
    outcome, _, _ = asha_search
    failed = [t for t in outcome.ranking if t.outcome == "failed"]
    assert len(failed) == 1 and failed[0].params["fail_at_epoch"] == 2
    assert "synthetic failure at epoch 2" in (failed[0].error or "")
    assert failed[0].epochs == 1  # epoch 1 was reported before the failure
    assert len(outcome.ranking) == 4


def test_ended_trials_leave_no_work_folder_in_rays_session_folder(
    asha_search: tuple[SearchOutcome, Any, Path],
) -> None:
    """Finished, failed and ASHA-stopped trials alike: their checkpoints and weights are gone from /tmp/ray."""
    outcome, _, _ = asha_search
    ray_tmp = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray"  # session_2*: not the session_latest link
    trial_dirs = list(ray_tmp.glob(f"session_2*/artifacts/*/{outcome.tune_experiment}/working_dirs/*"))
    assert len(trial_dirs) == len(outcome.ranking) == 4  # Tune made one working directory per trial
    assert [d for d in trial_dirs if (d / "work").exists()] == []
    # ...while what outlives a trial is still there: its checkpoints in Tune's storage
    good = max(outcome.ranking, key=lambda t: t.epochs)
    assert any(Path(outcome.experiment_path).glob(f"*{good.trial_id}*/checkpoint_*"))


def test_mlflow_holds_the_nested_tree_with_per_epoch_histories(
    asha_search: tuple[SearchOutcome, Any, Path],
) -> None:
    outcome, space, _ = asha_search
    parent, children = search_tree(outcome.tracking_uri, space.name)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["hemotune.search"] == space.name
    assert parent.data.tags["hemotune.space_hash"] == space.source_hash
    assert len(parent.data.tags["hemotune.dataset_hash"]) == 64
    assert parent.data.tags["hemotune.version"]
    assert parent.data.tags["hemotune.best_trial_id"] == outcome.best.trial_id
    assert math.isfinite(parent.data.metrics["best/val/score"])
    assert len(children) == 4
    statuses = sorted(r.info.status for r in children)
    assert statuses == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    by_trial = {t.trial_id: t for t in outcome.ranking}
    for run in children:
        trial = by_trial[run.data.tags["hemotune.trial_id"]]
        assert float(run.data.params["lr"]) == pytest.approx(trial.params["lr"])
        assert run.data.params["epochs"] == "6" and run.data.params["rate"] == "0.6"
        steps = epoch_steps(outcome.tracking_uri, run.info.run_id, "val/score")
        assert steps == list(range(1, trial.epochs + 1))
        history = [m.value for m in _history(outcome.tracking_uri, run.info.run_id, "val/score")]
        assert all(math.isfinite(v) for v in history)
        assert math.isfinite(run.data.metrics["best/val/score"])
    client = _client(outcome.tracking_uri)
    for run in children:  # every trial reported epoch 1, its first best: ASHA-stopped and failed ones too
        assert [a.path for a in client.list_artifacts(run.info.run_id, "weights")] == ["weights/best.json"]
        assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/resolved.yaml"]


def test_trials_that_tune_ends_after_their_first_epoch_keep_their_best_weights_in_mlflow(
    tmp_path: Path,
) -> None:
    """A 1-epoch search (the README's shrunk smoke search): Tune ends each trial at its first report."""
    path = synthetic_space_file(
        tmp_path,
        name="one_epoch",
        fixed={"seconds_per_epoch": 0.0},
        parameters=CURVE_PARAMETERS,
        budget={"num_samples": 2, "max_concurrent": 2, "epochs": 1, "grace_period": 1, "max_failures": 0},
        points_to_evaluate=[GOOD, BAD],
    )
    settings = RunSettings(
        results_dir=str(tmp_path / "results"), local_dir=tmp_path / "results", num_cpus=2, show_progress=False
    )
    outcome = run_search(load_space(str(path)), settings)
    _, children = search_tree(outcome.tracking_uri, "one_epoch")
    client = _client(outcome.tracking_uri)
    assert len(children) == 2
    for run in children:
        assert [a.path for a in client.list_artifacts(run.info.run_id, "weights")] == ["weights/best.json"]
        assert run.data.tags.get("hemotune.device") == "cpu"  # the start-up tags were sent too
    assert outcome.best_dir is not None and (outcome.best_dir / "weights" / "best.json").is_file()


def test_best_configuration_is_exported(asha_search: tuple[SearchOutcome, Any, Path]) -> None:
    outcome, _, _ = asha_search
    assert outcome.best_dir is not None
    doc = yaml.safe_load((outcome.best_dir / "best_config.yaml").read_text())
    assert doc["trial_id"] == outcome.best.trial_id
    assert doc["sampled"]["lr"] == pytest.approx(0.01)
    assert doc["resolved"]["epochs"] == 6
    assert doc["weights"] and all(Path(w).exists() for w in doc["weights"])
    ranking = (outcome.best_dir.parent / "ranking.md").read_text()
    assert outcome.best.trial_id in ranking and "failed" in ranking


def test_trials_read_without_ray_equal_ray_tunes_experiment_analysis(
    asha_search: tuple[SearchOutcome, Any, Path],
) -> None:
    """``hemotune.results.read_trials`` reads Tune's files as ``ExperimentAnalysis`` does (no Ray)."""
    from ray.tune import ExperimentAnalysis

    from hemotune import storage
    from hemotune.results import read_trials

    outcome, space, _ = asha_search
    fs, path = storage.filesystem(outcome.experiment_path)
    analysis = ExperimentAnalysis(path, storage_filesystem=fs)
    names = {p.name for p in space.parameters}
    expected = {}
    for trial in analysis.trials:
        frame = analysis.trial_dataframes[trial.trial_id]
        rows = [] if frame.empty else frame.to_dict("records")
        history = [  # the data frame holds NaN where an epoch did not report a key
            {k: v for k, v in row.items() if not k.startswith("config/") and v == v} for row in rows
        ]
        error = trial.get_error()
        expected[trial.trial_id] = (
            str(trial),
            trial.status,
            {k: v for k, v in trial.config.items() if k in names},
            history,
            str(error).strip().splitlines()[-1] if error else None,
        )
    records = read_trials(outcome.experiment_path, space)
    assert {r.trial_id: (r.trial_name, r.status, dict(r.config), r.history, r.error) for r in records} == (
        expected
    )
    assert [r.trial_id for r in records] == [t.trial_id for t in analysis.trials]
    assert sorted(r.outcome for r in records) == ["completed", "failed", "stopped early", "stopped early"]


def test_a_result_file_cut_short_is_filled_from_the_trials_own_epoch_record(
    asha_search: tuple[SearchOutcome, Any, Path], tmp_path: Path
) -> None:
    """Each trial process records its epochs itself; a cut ``result.json`` loses none of them.

    A driver killed while uploading its folder leaves a trial's ``result.json`` cut short in
    storage (tests/tuning_tests/test_resume.py, SIGKILL): ``read_trials`` takes the epochs the
    file lacks from ``hemotune_epochs.jsonl``, which the trial process wrote.
    """
    import json
    import shutil

    from hemotune.results import EPOCH_RECORD_FILE, RESULT_FILE, epoch_metrics, read_trials

    outcome, space, _ = asha_search
    records = read_trials(outcome.experiment_path, space)
    copy = tmp_path / "experiment"
    shutil.copytree(outcome.experiment_path, copy)
    for record in records:  # the record holds what Tune holds, the failed trial's epochs included
        rows = [
            json.loads(line) for line in next(copy.glob(f"*{record.trial_id}*/{EPOCH_RECORD_FILE}")).open()
        ]
        assert [r["epoch"] for r in rows] == [r["epoch"] for r in record.history], record.trial_id
        assert [epoch_metrics(r) for r in rows] == [epoch_metrics(r) for r in record.history]
    full = next(r for r in records if r.outcome == "completed")
    assert len(full.history) == 6
    result = next(copy.glob(f"*{full.trial_id}*/{RESULT_FILE}"))
    lines = result.read_text().splitlines()
    result.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # cut mid-line
    again = {r.trial_id: r for r in read_trials(str(copy), space)}[full.trial_id]
    assert again.outcome == "completed"  # not "stopped early": its last epoch is back
    assert [r["training_iteration"] for r in again.history] == list(range(1, 7))
    assert again.history[:2] == full.history[:2]  # Tune's own rows where it has them
    assert [epoch_metrics(r) for r in again.history[2:]] == [epoch_metrics(r) for r in full.history[2:]]


def test_reading_and_ranking_a_search_imports_neither_ray_nor_mlflow(
    asha_search: tuple[SearchOutcome, Any, Path],
) -> None:
    outcome, space, _ = asha_search
    code = (
        "import sys\n"
        "from hemotune.results import rank_trials, read_trials\n"
        "from hemotune.spaces import load_space\n"
        f"space = load_space({space.source!r})\n"
        f"ranking = rank_trials(read_trials({outcome.experiment_path!r}, space), space, {{}})\n"
        "print(ranking[0].trial_id)\n"
        "print(sorted(m for m in ('ray', 'mlflow', 'pandas') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == [outcome.best.trial_id, "[]"]


def test_a_crashed_trial_process_restarts_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGKILL of a trial's process mid-trial: Tune restores it from its last epoch checkpoint."""
    markers = tmp_path / "markers"
    path = synthetic_space_file(
        tmp_path,
        name="crash_test",
        fixed={"seconds_per_epoch": 0.2, "crash_at_epoch": 3, "crash_marker_dir": str(markers)},
        budget={
            "num_samples": 2,
            "max_concurrent": 2,
            "epochs": 5,
            "grace_period": 5,
            "reduction_factor": 2,
            "max_failures": 2,
        },
        points_to_evaluate=[{"lr": 0.01, "plateau": 1.0}, {"lr": 0.02, "plateau": 0.9}],
    )
    space = load_space(str(path))
    settings = RunSettings(
        results_dir=str(tmp_path / "results"), local_dir=tmp_path / "results", num_cpus=2, show_progress=False
    )
    outcome = run_search(space, settings)
    assert len(list(markers.iterdir())) == 2  # both trials really were killed once
    assert [t.outcome for t in outcome.ranking] == ["completed", "completed"]
    _, children = search_tree(outcome.tracking_uri, space.name)
    assert len(children) == 2
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags.get("hemotune.restarted") == "true"
        steps = epoch_steps(outcome.tracking_uri, run.info.run_id)
        assert steps == [1, 2, 3, 4, 5]  # continuous: epochs 1-2 before the crash, 3-5 after


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _history(uri: str, run_id: str, key: str) -> list[Any]:
    return list(_client(uri).get_metric_history(run_id, key))


def test_no_ray_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    assert not ray.is_initialized()
    # What hemotune itself does around a local ray.init, whatever proxy the caller had (never the
    # harness's value): Ray's processes get the closed loopback port, trials and the caller keep theirs.
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    with local_ray_env() as trial_env:
        assert os.environ["http_proxy"] == CLOSED_LOOPBACK_PROXY
    assert trial_env["http_proxy"] == os.environ["http_proxy"] == "http://proxy.example:3128"
