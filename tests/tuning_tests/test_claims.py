"""README promises that no other test checked, each against a real search (synthetic curves, tiny budgets).

* the parent run holds exactly the tags, params, metrics and artifacts the README's MLflow table lists;
* ``--resume`` with changed data exits 2 naming the change, before anything is re-opened;
* TPE's suggestions are reproduced by the space's seed (and another seed suggests others);
* a trial whose node prepared other data than the driver fails, saying every trial must see the same data;
* a runtime failure (not the user's input) exits 1 with ``hemotune: failed:``.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import mlflow_client, search_tree, synthetic_space_file

import hemotune
from hemotune.cli import main
from hemotune.config import RunSettings
from hemotune.data.fingerprint import fingerprint_tree
from hemotune.data.prepared import PreparedData
from hemotune.results import read_trials
from hemotune.spaces import load_space
from hemotune.testing.synthetic import SyntheticCurvesTrainer
from hemotune.trainers import register_trainer
from hemotune.tuning import SearchOutcome, run_search
from hemotune.tuning.session import ray_session

NAME = "claims_test"
SEED = 11
BUDGET = {"num_samples": 3, "max_concurrent": 1, "epochs": 2, "grace_period": 2, "max_failures": 0}


class ReportingCurvesTrainer(SyntheticCurvesTrainer):
    """Synthetic curves whose data preparation writes a data report, as the real trainers do."""

    name = "reporting_curves"

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        prepared = super().prepare_data(dataset, params, cache_dir)
        report = Path(cache_dir) / "reports" / prepared.fingerprint[:12] / "data_report.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({"files": prepared.summary["files"], "changed": []}))
        report.with_suffix(".md").write_text(
            f"# Data report\n\n{prepared.summary['files']} files, none changed\n"
        )
        return PreparedData(prepared.path, prepared.fingerprint, prepared.source, prepared.summary, report)


class FailingPrepareTrainer(SyntheticCurvesTrainer):
    """A trainer whose data preparation breaks for a reason that is not the user's input."""

    name = "failing_prepare"

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        raise RuntimeError("the converter crashed")


@pytest.fixture(scope="module", autouse=True)
def _trainers() -> Iterator[None]:
    """Register this module's trainers; Ray workers cannot import a test module, so they get them by value."""
    import ray.cloudpickle

    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    register_trainer("reporting_curves", f"{__name__}:ReportingCurvesTrainer")
    register_trainer("failing_prepare", f"{__name__}:FailingPrepareTrainer")
    yield
    ray.cloudpickle.unregister_pickle_by_value(module)


def _space_file(tmp: Path, *, seed: int = SEED, **updates: Any) -> Path:
    return synthetic_space_file(
        tmp,
        name=NAME,
        trainer="reporting_curves",
        fixed={"seconds_per_epoch": 0.0},
        budget=BUDGET,
        seed=seed,
        points_to_evaluate=[],
        **updates,
    )


def _search(tmp: Path, space_file: Path, **settings: Any) -> SearchOutcome:
    results = tmp / "results"
    return run_search(
        load_space(str(space_file)),
        RunSettings(
            results_dir=str(results),
            local_dir=results,
            cache_dir=tmp / "cache",
            num_cpus=2,
            show_progress=False,
            **settings,
        ),
    )


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchOutcome, Path, Path]:
    """(outcome, space file, search folder) of one finished sequential search."""
    tmp = tmp_path_factory.mktemp("claims")
    space_file = _space_file(tmp)
    return _search(tmp, space_file), space_file, tmp


def _artifacts(client: Any, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def test_the_parent_run_holds_what_the_readme_documents(search: tuple[SearchOutcome, Path, Path]) -> None:
    outcome, space_file, tmp = search
    space = load_space(str(space_file))
    parent, children = search_tree(outcome.tracking_uri, NAME)
    tags = {k: v for k, v in parent.data.tags.items() if k.startswith("hemotune.")}
    data = tmp / "data"
    best_run = next(r for r in children if r.data.tags["hemotune.trial_id"] == outcome.best.trial_id)
    assert tags == {
        "hemotune.role": "search",
        "hemotune.search": NAME,
        "hemotune.space_file": str(space_file.resolve()),
        "hemotune.space_hash": hashlib.sha256(space_file.read_bytes()).hexdigest(),
        "hemotune.dataset_hash": fingerprint_tree(data),
        "hemotune.dataset": str(data.resolve()),
        "hemotune.version": hemotune.__version__,
        "hemotune.trainer": "reporting_curves",
        "hemotune.objective": "val/score (max)",
        "hemotune.tune_experiment": Path(outcome.experiment_path).name,
        "hemotune.storage": outcome.experiment_path,
        "hemotune.preset": "",
        "hemotune.outcome": "finished",
        "hemotune.best_trial_id": outcome.best.trial_id,
        "hemotune.best_run_id": best_run.info.run_id,
    }
    assert {r.data.tags["hemotune.dataset_hash"] for r in children} == {tags["hemotune.dataset_hash"]}

    params = parent.data.params
    expected = {"search": NAME, "trainer": "reporting_curves", "objective": "val/score", "mode": "max"}
    expected |= {
        "seed": str(SEED),
        "budget.num_samples": "3",
        "budget.epochs": "2",
        "budget.max_failures": "0",
    }
    expected |= {"resources.cpu": "1", "fixed.rate": "0.6", "fixed.seconds_per_epoch": "0.0"}
    assert expected.items() <= params.items()
    assert ast.literal_eval(params["space.plateau"]) == {"type": "float", "low": 0.2, "high": 1.0}
    assert set(params) == (
        {"search", "trainer", "objective", "mode", "seed"}
        | {f"budget.{k}" for k in asdict(space.budget)}
        | {f"resources.{k}" for k in asdict(space.resources)}
        | {f"fixed.{k}" for k in space.fixed}
        | {"space.lr", "space.plateau"}
    )

    best_history = [
        m.value
        for m in mlflow_client(outcome.tracking_uri).get_metric_history(best_run.info.run_id, "val/score")
    ]
    assert parent.data.metrics["best/val/score"] == max(best_history) == outcome.best.best_value
    # and its best epoch's metrics
    assert set(parent.data.metrics) == {"best/val/score", "val/score", "train/loss", "val/cost"}

    client = mlflow_client(outcome.tracking_uri)
    assert sorted(_artifacts(client, parent.info.run_id)) == [
        "config/search_space.yaml",
        "data/data_report.json",
        "data/data_report.md",
        "data/summary.yaml",
        "ranking.md",
        "report.html",
    ]
    local = Path(client.download_artifacts(parent.info.run_id, "", str(tmp / "parent_artifacts")))
    assert yaml.safe_load((local / "config/search_space.yaml").read_text()) == space.as_dict()
    assert json.loads((local / "data/data_report.json").read_text()) == {"files": 1, "changed": []}
    assert yaml.safe_load((local / "data/summary.yaml").read_text()) == {"files": 1}
    ranking = (local / "ranking.md").read_text()
    assert ranking == (Path(outcome.experiment_path) / "ranking.md").read_text()
    assert all(r.trial_id in ranking for r in outcome.ranking)


def test_resume_with_changed_data_exits_2_naming_the_change(
    search: tuple[SearchOutcome, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    outcome, space_file, tmp = search
    data = tmp / "data"
    before = fingerprint_tree(data)
    added = data / "one_more_file.txt"
    added.write_text("the dataset changed after the search started\n")
    try:
        after = fingerprint_tree(data)
        code = main(
            ["search", str(space_file), "--resume", "--results-dir", str(tmp / "results"), "--no-progress"]
        )
    finally:
        added.unlink()
    err = capsys.readouterr().err
    assert code == 2, err
    assert (
        f"hemotune: error: the dataset changed since {Path(outcome.experiment_path).name} started "
        f"({before[:12]} -> {after[:12]}); resume needs the same data"
    ) in err
    parent, _ = search_tree(outcome.tracking_uri, NAME)
    assert parent.info.status == "FINISHED" and "hemotune.resumed_at" not in parent.data.tags  # not re-opened


def _sampled(outcome: SearchOutcome, space_file: Path) -> list[dict[str, float]]:
    """The configs Tune ran, in the order the searcher suggested them (one trial at a time)."""
    return [dict(r.config) for r in read_trials(outcome.experiment_path, load_space(str(space_file)))]


@pytest.mark.slow  # two more searches
def test_tpe_suggestions_are_reproduced_by_the_seed(
    search: tuple[SearchOutcome, Path, Path], tmp_path: Path
) -> None:
    first, first_file, _ = search
    runs = [(first, first_file)]
    with ray_session(RunSettings(num_cpus=2)):  # one Ray start for both (the first search had its own)
        for folder, seed in ((tmp_path / "same", SEED), (tmp_path / "other", SEED + 1)):
            folder.mkdir()
            space_file = _space_file(folder, seed=seed)
            runs.append((_search(folder, space_file), space_file))
    configs = [_sampled(outcome, space_file) for outcome, space_file in runs]
    assert len(configs[0]) == BUDGET["num_samples"]
    assert configs[1] == configs[0]  # same space, same seed: the same configs, in the same order
    assert all(a != b for a, b in zip(configs[2], configs[0], strict=True))  # another seed: others


def test_a_trial_whose_node_prepared_other_data_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An s3:// dataset is taken from each node's own cache: a node whose copy differs fails its trials."""
    from cluster_stack import S3Server

    from hemotune.data import remote

    credentials = {"AWS_ACCESS_KEY_ID": "claims-key", "AWS_SECRET_ACCESS_KEY": "claims-secret"}
    (tmp_path / "moto").mkdir()
    server = S3Server(tmp_path / "moto", {**os.environ, **credentials})
    try:
        for key, value in {**credentials, "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        client = remote.s3_client()
        client.create_bucket(Bucket="claims")
        local = tmp_path / "dataset"
        local.mkdir()
        (local / "cells.txt").write_text("the driver's data\n")
        uri = "s3://claims/datasets/cells"
        remote.upload_dataset(local, uri, client=client)
        # The trials' node cache holds a finished copy of the same listing whose content differs
        # (a stale or tampered cache): the trial uses it as it is, and must notice.
        node_cache = tmp_path / "node_cache"
        entry = remote.fetch_dataset(uri, node_cache, client=client)
        (entry / "cells.txt").write_text("other data on this node\n")
        monkeypatch.setenv("HEMOTUNE_CACHE_DIR", str(node_cache))  # trial processes read it
        space_file = synthetic_space_file(
            tmp_path,
            name="node_data_test",
            dataset={"path": uri},
            fixed={"seconds_per_epoch": 0.0},
            budget={**BUDGET, "num_samples": 1},
            points_to_evaluate=[],
        )
        outcome = run_search(
            load_space(str(space_file)),
            RunSettings(
                results_dir=str(tmp_path / "results"),
                local_dir=tmp_path / "results",
                cache_dir=tmp_path / "driver_cache",  # the driver's own copy, fetched from S3
                num_cpus=2,
                show_progress=False,
            ),
        )
    finally:
        server.service.kill()
    driver_fp = fingerprint_tree(tmp_path / "driver_cache" / "s3" / entry.name)  # the same cache entry
    node_fp = fingerprint_tree(entry)
    assert driver_fp != node_fp
    parent, children = search_tree(outcome.tracking_uri, "node_data_test")
    assert parent.data.tags["hemotune.dataset_hash"] == driver_fp
    (trial,) = outcome.ranking
    message = (
        f"the dataset prepared on {socket.gethostname()} ({node_fp[:12]}) differs from the driver's "
        f"({driver_fp[:12]}): every trial must see the same data"
    )
    assert trial.outcome == "failed" and message in (trial.error or ""), trial.error
    (run,) = children
    assert run.info.status == "FAILED" and message in run.data.tags["hemotune.error"]


def test_a_trial_checks_the_fingerprint_of_the_data_it_prepares_itself(tmp_path: Path) -> None:
    """Without the driver's copy on its node, a trial prepares the data itself and compares fingerprints."""
    from hemotune.tracking import TrialRunInfo
    from hemotune.tuning.trial import TrialJob, _ensure_data

    data = tmp_path / "data"
    data.mkdir()
    (data / "cells.txt").write_text("what this node sees\n")
    job = TrialJob(
        trainer="synthetic_curves",
        trainer_class=SyntheticCurvesTrainer,
        fixed={},
        dataset={"path": str(data)},
        data_path=str(tmp_path / "not_on_this_node"),
        data_fingerprint="0" * 64,
        cache_dir=str(tmp_path / "cache"),
        tracking=TrialRunInfo("sqlite:///unused.db", "0", "p", "s", "s-1", "0" * 64),
        objective="val/score",
        mode="max",
    )
    with pytest.raises(
        RuntimeError, match="differs from the driver's \\(000000000000\\): every trial must see"
    ):
        _ensure_data(job, SyntheticCurvesTrainer())
    same = dataclasses.replace(job, data_fingerprint=fingerprint_tree(data))
    assert _ensure_data(same, SyntheticCurvesTrainer()) == str(data.resolve())


def test_a_runtime_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not the user's input: an unreachable MLflow server, a trainer that crashes preparing data."""
    with socket.socket() as closed:  # bound, never listening: connecting is refused at once
        closed.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{closed.getsockname()[1]}"
        space_file = synthetic_space_file(tmp_path, name="exit_one_test", budget={**BUDGET, "num_samples": 1})
        env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "hemotune",
                "search",
                str(space_file),
                "--tracking-uri",
                uri,
                "--results-dir",
                str(tmp_path / "results"),
                "--no-progress",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "hemotune: failed: MlflowException" in proc.stderr and uri in proc.stderr, proc.stderr

    failing = synthetic_space_file(tmp_path, name="failing_prepare_test", trainer="failing_prepare")
    assert main(["search", str(failing), "--results-dir", str(tmp_path / "r2"), "--no-progress"]) == 1
    assert "hemotune: failed: RuntimeError: the converter crashed" in capsys.readouterr().err
