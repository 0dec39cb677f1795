"""``hemotune best``: the MLflow UI's winner, exported as a one-trial space, registered as champion.

One module-scoped pair of real synthetic searches (two executions of the same space in one
results folder, so there is a latest parent run and an earlier one) serves every slow test;
``hemotune best`` reads them from the embedded SQLite store exactly as a user would. The
searches, and the export test's rerun, share one private local Ray (``ray_session`` reuses a
Ray its caller started): each costs its trials, not a Ray start.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import mlflow_client, synthetic_space_file

from hemotune.cli import main
from hemotune.config import RunSettings
from hemotune.spaces import load_space, validate_space
from hemotune.spaces.fixed import logged_value, single_trial_document
from hemotune.tuning import SearchOutcome, run_search
from hemotune.tuning.session import ray_session

NAME = "best_test"
PROBE = textwrap.dedent(
    """
    import sys
    from hemotune.cli import main
    code = main(sys.argv[1:])
    print("HEAVY=" + ",".join(m for m in ("ray", "torch", "ultralytics", "optuna") if m in sys.modules))
    sys.exit(code)
    """
)


@dataclass
class Searches:
    root: Path
    results: Path
    uri: str
    first: SearchOutcome
    latest: SearchOutcome

    def cli(self, *args: str) -> list[str]:
        return ["best", NAME, "--results-dir", str(self.results), *args]


@pytest.fixture(scope="module")
def searches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Searches]:
    """Two executions of one synthetic search (4 trials, then 3) under one results folder.

    The module's Ray stays up until its last test (the export test reruns a trial in it).
    """
    root = tmp_path_factory.mktemp("best")
    space_file = synthetic_space_file(
        root,
        name=NAME,
        fixed={"seconds_per_epoch": 0.0},
        budget={"num_samples": 4, "max_concurrent": 2, "epochs": 4, "grace_period": 1, "reduction_factor": 2},
    )
    results = root / "results"
    outcomes = []
    with ray_session(RunSettings(num_cpus=2)):
        for execution, samples in (("a", 4), ("b", 3)):
            settings = RunSettings(
                results_dir=str(results),
                local_dir=results,
                num_cpus=2,
                show_progress=False,
                experiment_name=f"{NAME}-{execution}",
            )
            outcomes.append(run_search(load_space(str(space_file), num_samples=samples), settings))
        yield Searches(root, results, outcomes[0].tracking_uri, outcomes[0], outcomes[1])


def _children_sorted(uri: str, parent_run_id: str, metric: str, order: str) -> list[Any]:
    """The MLflow UI's view: the parent's children sorted by a metric column."""
    client = mlflow_client(uri)
    parent = client.get_run(parent_run_id)
    return list(
        client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            order_by=[f"metrics.`{metric}` {order}"],
        )
    )


@pytest.mark.slow
def test_best_names_the_trial_mlflow_sorts_first_without_ray(searches: Searches) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *searches.cli()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=searches.root,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("HEAVY="), proc.stdout  # no Ray, no torch, no Optuna
    top = _children_sorted(searches.uri, searches.latest.parent_run_id, "best/val/score", "DESC")[0]
    trial_id = top.data.tags["hemotune.trial_id"]
    assert f"best: trial {trial_id} (run {top.info.run_id})" in proc.stdout
    assert searches.latest.parent_run_id in proc.stdout  # the latest execution by default
    assert trial_id == searches.latest.best.trial_id  # and the search's own ranking agrees
    parent = mlflow_client(searches.uri).get_run(searches.latest.parent_run_id)
    assert parent.data.tags["hemotune.best_run_id"] == top.info.run_id
    assert parent.data.tags["hemotune.best_trial_id"] == trial_id


@pytest.mark.slow
def test_metric_mode_and_top_rank_by_another_column(
    searches: Searches, capsys: pytest.CaptureFixture
) -> None:
    assert main(searches.cli("--metric", "train/loss", "--mode", "min", "--top", "2")) == 0
    out = capsys.readouterr().out
    ranked = _children_sorted(searches.uri, searches.latest.parent_run_id, "train/loss", "ASC")
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and f"{len(ranked) - 2} more trial(s) not shown" in out
    assert ranked[0].info.run_id in rows[0] and ranked[1].info.run_id in rows[1]
    assert f"train/loss = {ranked[0].data.metrics['train/loss']:.4f}" in out
    tags = mlflow_client(searches.uri).get_run(searches.latest.parent_run_id).data.tags
    assert tags["hemotune.best_run_id/train/loss"] == ranked[0].info.run_id
    assert tags["hemotune.best_run_id"] == searches.latest.best.run_id  # the objective's winner stays


@pytest.mark.slow
def test_run_id_picks_an_earlier_execution_and_bad_names_exit_2(
    searches: Searches, capsys: pytest.CaptureFixture
) -> None:
    first = searches.first.parent_run_id
    assert main(searches.cli("--run-id", first)) == 0
    out = capsys.readouterr().out
    top = _children_sorted(searches.uri, first, "best/val/score", "DESC")[0]
    assert f"parent run {first}" in out and f"(run {top.info.run_id})" in out
    assert main(["best", "no_such_search", "--results-dir", str(searches.results)]) == 2
    err = capsys.readouterr().err
    assert "no_such_search" in err and searches.uri in err and NAME in err  # names it, where, what is there
    assert main(searches.cli("--run-id", "0123456789abcdef0123456789abcdef")) == 2
    assert "0123456789abcdef0123456789abcdef" in capsys.readouterr().err
    assert main(searches.cli("--run-id", top.info.run_id)) == 2  # a trial's run is no search execution
    assert "not a parent run" in capsys.readouterr().err


def test_a_results_dir_without_a_store_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["best", "anything", "--results-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "'anything'" in err and str(tmp_path / "nowhere" / "mlflow.db") in err
    assert not (tmp_path / "nowhere").exists()  # nothing created while looking


@pytest.mark.slow
def test_export_writes_weights_metrics_and_a_space_that_reruns_the_trial(
    searches: Searches, capsys: pytest.CaptureFixture
) -> None:
    out_dir = searches.root / "exported"
    assert main(searches.cli("--export", str(out_dir))) == 0
    best = searches.latest.best
    assert json.loads((out_dir / "weights" / "best.json").read_text())["score"] == pytest.approx(
        best.best_value
    )
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["run_id"] == best.run_id and metrics["trial_id"] == best.trial_id
    assert metrics["metrics"]["best/val/score"] == pytest.approx(best.best_value)
    assert float(metrics["params"]["lr"]) == pytest.approx(best.params["lr"])
    space_file = out_dir / f"{NAME}_best.yaml"
    doc = yaml.safe_load(space_file.read_text())
    assert doc["parameters"] == {} and doc["budget"]["num_samples"] == 1
    assert doc["fixed"]["lr"] == pytest.approx(best.params["lr"]) and isinstance(
        doc["fixed"]["plateau"], float
    )
    # `hemotune search` accepts it and runs exactly one trial, which reproduces the winner's score.
    rerun = run_search(
        load_space(str(space_file)),
        RunSettings(
            results_dir=str(searches.root / "rerun"),
            local_dir=searches.root / "rerun",
            num_cpus=2,
            show_progress=False,
        ),
    )
    assert len(rerun.ranking) == 1 and rerun.ranking[0].outcome == "completed"
    assert rerun.best is not None and rerun.best.best_value == pytest.approx(best.best_value, abs=1e-12)


@pytest.mark.slow
def test_register_points_champion_at_the_runs_weights_and_a_newer_best_moves_it(
    searches: Searches, capsys: pytest.CaptureFixture
) -> None:
    client = mlflow_client(searches.uri)
    model = "best-test-model"
    first = searches.first
    assert main(searches.cli("--run-id", first.parent_run_id, "--register", model)) == 0
    champion = client.get_model_version_by_alias(model, "champion")
    assert str(champion.version) == "1" and champion.run_id == first.best.run_id
    assert champion.tags["hemotune.trial_id"] == first.best.trial_id
    assert champion.tags["hemotune.space_hash"] and len(champion.tags["hemotune.dataset_hash"]) == 64
    assert float(champion.tags["hemotune.objective_value"]) == pytest.approx(first.best.best_value)
    assert _sha(_download(searches.uri, f"models:/{model}@champion", searches.root / "v1")) == _sha(
        _download(searches.uri, f"runs:/{first.best.run_id}/weights", searches.root / "run1")
    )
    logged = client.get_logged_model(champion.source.removeprefix("models:/"))
    assert logged.source_run_id == first.best.run_id
    assert {m.key for m in logged.metrics} >= {"best/val/score"}
    # The latest execution's best is another run: a new version, the alias moves, version 1 stays.
    assert main(searches.cli("--register", model)) == 0
    assert "moved from version 1" in capsys.readouterr().out
    champion = client.get_model_version_by_alias(model, "champion")
    assert str(champion.version) == "2" and champion.run_id == searches.latest.best.run_id
    assert client.get_model_version(model, "1").run_id == first.best.run_id
    # Registering the same run again re-uses its version.
    assert main(searches.cli("--register", model)) == 0
    assert len(client.search_model_versions(f"name = '{model}'")) == 2


def _download(uri: str, artifact_uri: str, dest: Path) -> Path:
    import mlflow.artifacts

    from hemotune.offline import temporary_env

    with temporary_env({"MLFLOW_TRACKING_URI": uri}):  # models:/ URIs resolve through the default registry
        return Path(mlflow.artifacts.download_artifacts(artifact_uri, dst_path=str(dest)))


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_single_trial_document_fixes_the_winner_and_validates(tmp_path: Path) -> None:
    doc = yaml.safe_load(synthetic_space_file(tmp_path, name="fix_test").read_text())
    doc["parameters"]["optimizer"] = {"type": "categorical", "choices": ["SGD", "Adam"]}
    doc["parameters"]["fail_at_epoch"] = {"type": "int", "low": 0, "high": 3}
    logged = {"lr": "0.0031", "plateau": "0.5", "optimizer": "Adam", "fail_at_epoch": "0"}
    values = {name: logged_value(spec, logged[name]) for name, spec in doc["parameters"].items()}
    assert values == {"lr": 0.0031, "plateau": 0.5, "optimizer": "Adam", "fail_at_epoch": 0}
    fixed = single_trial_document(doc, values, name="fix_test_best", seed=11)
    space = validate_space(fixed, "fix_test_best.yaml")
    assert space.parameters == () and space.budget.num_samples == 1 and space.seed == 11
    assert space.fixed["optimizer"] == "Adam" and space.fixed["rate"] == doc["fixed"]["rate"]
    assert space.points_to_evaluate == ()
    with pytest.raises(ValueError, match="none of the choices"):
        logged_value({"type": "categorical", "choices": [True, False]}, "maybe")
    assert logged_value({"type": "categorical", "choices": [True, False]}, "False") is False
