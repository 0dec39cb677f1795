"""report.html from a Tune experiment folder written by hand (no Ray, no MLflow): fast, exact checks.

``tests/tuning_tests/test_report.py`` renders the report of a real search in headless
Chromium; this test pins down what the page holds for a search with every outcome
(completed, stopped early, failed), per-class metrics, a confusion matrix and
evaluation / ablation files, without starting anything.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import synthetic_space_file

from hemotune.config import SearchSpace
from hemotune.reports import write_search_report
from hemotune.reports.sections import SECTIONS
from hemotune.reports.study import report_study
from hemotune.results import rank_trials, read_trials
from hemotune.spaces import load_space
from hemotune.testing.synthetic import SyntheticCurvesTrainer

#: trial id -> (lr, plateau, epochs reported, Tune status, failed)
TRIALS = {
    "t0": (0.01, 1.0, 6, "TERMINATED"),
    "t1": (0.003, 0.9, 6, "TERMINATED"),
    "t2": (1.0e-4, 0.5, 1, "TERMINATED"),
    "t3": (0.3, 0.4, 2, "TERMINATED"),
    "t4": (2.0e-5, 0.3, 1, "TERMINATED"),
    "t5": (0.05, 0.8, 2, "ERROR"),
}
CLASSES = ("RBC", "WBC", "Platelets")


def _space(tmp_path: Path) -> SearchSpace:
    path = synthetic_space_file(tmp_path, name="report_unit", budget={"num_samples": 6, "epochs": 6})
    return load_space(str(path))


def _rows(trial_id: str, lr: float, plateau: float, epochs: int) -> list[dict[str, Any]]:
    """What Tune stores per epoch for a synthetic trial, with per-class AP50 as detection reports it."""
    rows = []
    for epoch in range(1, epochs + 1):
        score = SyntheticCurvesTrainer.score({"lr": lr, "plateau": plateau, "rate": 0.6}, epoch)
        per_class = {f"AP50/{c}": score * (i + 1) / 3 for i, c in enumerate(CLASSES)}
        rows.append(
            {
                "epoch": epoch,
                "val": {"score": score, **per_class},
                "train": {"loss": 1 - score},
                "timestamp": 1_700_000_000 + 10 * epoch + int(lr * 1000),
                "time_total_s": 2.0 * epoch,
                "training_iteration": epoch,
                "trial_id": trial_id,
            }
        )
    return rows


def _experiment(root: Path) -> Path:
    """A hand-written Tune experiment with the trials of ``TRIALS``."""
    trial_data = []
    for trial_id, (lr, plateau, epochs, status) in TRIALS.items():
        folder = root / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        rows = _rows(trial_id, lr, plateau, epochs)
        (folder / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        metadata = {}
        if status == "ERROR":
            (folder / "error.txt").write_text("Traceback ...\nRuntimeError: synthetic failure at epoch 3\n")
            metadata["error_filename"] = "error.txt"
        trial = {
            "trial_id": trial_id,
            "status": status,
            "config": {"lr": lr, "plateau": plateau},
            "relative_logdir": folder.name,
            "trainable_name": "run_trial",
        }
        trial_data.append([json.dumps(trial), json.dumps(metadata)])
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    return root


def _local_files(local: Path) -> None:
    """The exported best trial's confusion matrix, and evaluation / ablation documents."""
    from PIL import Image

    best = local / "best"
    best.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    (best / "confusion_matrix.png").write_bytes(buffer.getvalue())
    matrix = {"classes": list(CLASSES), "matrix": [[50, 2, 0], [1, 9, 0], [0, 0, 7]]}
    (best / "confusion_matrix.json").write_text(json.dumps(matrix))
    rows = [
        {"configuration": "baseline", "test/mAP50": 0.61},
        {"configuration": "stain_mask", "test/mAP50": 0.67},
    ]
    (local / "evaluation.json").write_text(json.dumps({"split": "test", "rows": rows}))
    (local / "ablation.json").write_text(
        json.dumps({"both": {"mean": 0.7, "n": 3}, "none": {"mean": 0.6, "n": 3}})
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SearchSpace, Path]:
    tmp = tmp_path_factory.mktemp("report")
    space = _space(tmp)
    experiment = _experiment(tmp / "results" / "report_unit-20260101-000000")
    _local_files(experiment)
    out = write_search_report(
        space, str(experiment), experiment, tracking=None, state={"dataset_hash": "ab" * 32}
    )
    return out.read_text(), space, experiment


def test_every_section_is_there_with_its_figures(page: tuple[str, SearchSpace, Path]) -> None:
    text, _, experiment = page
    assert (experiment / "report.html").is_file()
    for section_id in SECTIONS:
        assert f'<section id="{section_id}">' in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    # history (2), importances, parallel coordinates, slices, learning curves, confusion matrix
    assert len(images) == 7, re.findall(r'<p class="note">[^<]*</p>', text)
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)


def test_the_page_refers_to_nothing_outside_itself(page: tuple[str, SearchSpace, Path]) -> None:
    text, _, _ = page
    assert "default-src 'none'" in text
    assert not re.search(r"(src|href)=\"(?!data:|#)", text)
    assert "<script" not in text and "@import" not in text and "url(" not in text


def test_summary_counts_outcomes_and_names_data_and_versions(page: tuple[str, SearchSpace, Path]) -> None:
    text, space, _ = page
    assert "<td>trials completed</td><td>2</td>" in text
    assert "<td>trials stopped early</td><td>3</td>" in text
    assert "<td>trials failed</td><td>1</td>" in text
    assert "ab" * 32 in text and space.trainer in text
    assert "<td>optuna</td><td>" in text and "<td>hemotune</td><td>" in text
    assert "<td>epochs trained (sum over trials)</td><td>18</td>" in text


def test_ranked_table_follows_the_ranking(page: tuple[str, SearchSpace, Path]) -> None:
    text, space, experiment = page
    ranking = rank_trials(read_trials(str(experiment), space), space, {})
    table = text.split('<section id="ranking">')[1].split("</section>")[0]
    order = re.findall(r"<tr[^>]*><td>\d+</td><td>\d+</td><td>(t\d)</td>", table)
    assert order == [t.trial_id for t in ranking] and order[0] == "t0"
    assert "synthetic failure at epoch 3" in table


def test_best_trial_shows_per_class_metrics_and_confusion_matrix(page: tuple[str, SearchSpace, Path]) -> None:
    text, _, _ = page
    best = text.split('<section id="best-trial">')[1].split("</section>")[0]
    assert "<b>t0</b>" in best
    for name in CLASSES:
        assert f"<td>{name}</td>" in best
    assert "<th>AP50</th>" in best
    assert "<td>WBC</td><td>1</td><td>9</td><td>0</td>" in best  # the confusion matrix counts


def test_evaluation_and_ablation_files_become_tables(page: tuple[str, SearchSpace, Path]) -> None:
    text, _, _ = page
    results = text.split('<section id="results">')[1].split("</section>")[0]
    assert "<td>stain_mask</td><td>0.67</td>" in results
    assert "<td>both</td><td>0.7</td><td>3</td>" in results
    assert "pareto" not in results


def test_study_has_one_trial_per_tune_trial_with_the_ranking_values(
    page: tuple[str, SearchSpace, Path],
) -> None:
    _, space, experiment = page
    records = read_trials(str(experiment), space)
    ranking = rank_trials(records, space, {})
    study = report_study(records, ranking, space)
    assert [t.user_attrs["trial_id"] for t in study.trials] == list(TRIALS)
    values = {t.trial_id: t.best_value for t in ranking}
    for trial in study.trials:
        if trial.user_attrs["outcome"] == "failed":
            assert trial.state.name == "FAIL" and trial.value is None
        else:
            assert trial.value == pytest.approx(values[trial.user_attrs["trial_id"]])
        assert max(trial.intermediate_values) == TRIALS[trial.user_attrs["trial_id"]][2]


def test_report_of_an_unknown_search_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hemotune.cli import main

    assert main(["report", "no_such_search", "--results-dir", str(tmp_path)]) == 2
    assert f"no search named 'no_such_search' under {tmp_path}" in capsys.readouterr().err
