"""report.html of a real search (Ray Tune + Optuna + MLflow over the synthetic trainer), in real Chromium.

One small search ends with its report written and logged (the end-of-search step);
``hemotune report`` then rewrites it in a process that never imports Ray, and headless
Chromium renders it: every section is in the DOM, the screenshot is a real picture,
and the page asked for nothing (its net log holds no request of the page's own).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chromium import render
from helpers import (
    BAD,
    CURVE_PARAMETERS,
    FAILING,
    GOOD,
    REPO,
    mlflow_client,
    search_tree,
    synthetic_space_file,
)
from PIL import Image, ImageStat

from hemotune.config import RunSettings
from hemotune.reports.sections import SECTIONS
from hemotune.spaces import load_space
from hemotune.tuning import SearchOutcome, run_search

pytestmark = pytest.mark.slow

#: Run ``hemotune report`` and prove it never imported Ray.
NO_RAY = "import sys; from hemotune.cli import main; rc = main(sys.argv[1:]); assert 'ray' not in sys.modules; sys.exit(rc)"


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchOutcome, Any, Path]:
    """Five trials, one at a time: completed, stopped early at the grace period, failed, two sampled."""
    tmp = tmp_path_factory.mktemp("report")
    path = synthetic_space_file(
        tmp,
        name="report_test",
        fixed={"seconds_per_epoch": 0.0},
        parameters=CURVE_PARAMETERS,
        budget={
            "num_samples": 5,
            "max_concurrent": 1,
            "epochs": 4,
            "grace_period": 1,
            "reduction_factor": 2,
            "max_failures": 0,
        },
        points_to_evaluate=[GOOD, BAD, FAILING],
    )
    space = load_space(str(path))
    results = tmp / "results"
    settings = RunSettings(results_dir=str(results), local_dir=results, num_cpus=2, show_progress=False)
    return run_search(space, settings), space, tmp


def _report_artifacts(uri: str, name: str) -> list[str]:
    parent, _ = search_tree(uri, name)
    return [a.path for a in mlflow_client(uri).list_artifacts(parent.info.run_id)]


def test_search_ends_with_its_report_written_and_logged(search: tuple[SearchOutcome, Any, Path]) -> None:
    outcome, space, _ = search
    page = Path(outcome.experiment_path) / "report.html"
    assert page.is_file()
    text = page.read_text()
    assert all(f'<section id="{s}">' in text for s in SECTIONS)
    assert "report.html" in _report_artifacts(outcome.tracking_uri, space.name)
    outcomes = sorted(t.outcome for t in outcome.ranking)
    assert outcomes.count("failed") == 1 and "stopped early" in outcomes and "completed" in outcomes
    assert "<td>trials failed</td><td>1</td>" in text


def test_report_command_renders_offline_in_chromium(search: tuple[SearchOutcome, Any, Path]) -> None:
    outcome, space, tmp = search
    out = tmp / "page" / "report.html"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [
        sys.executable,
        "-c",
        NO_RAY,
        "report",
        space.name,
        "--results-dir",
        str(tmp / "results"),
        "--out",
        str(out),
    ]
    done = subprocess.run(cli, cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"report: {out}" in done.stdout
    rendering = render(out, tmp / "chromium")
    for section_id, heading in SECTIONS.items():
        assert f'<section id="{section_id}">' in rendering.dom
        assert heading.replace("&", "&amp;") in rendering.dom
    assert rendering.dom.count("data:image/png;base64,") >= 6
    assert outcome.best is not None and f"<b>{outcome.best.trial_id}</b>" in rendering.dom
    assert rendering.page_requests == []
    image = Image.open(rendering.screenshot).convert("L")
    assert image.size == (1280, 4000) and rendering.screenshot.stat().st_size > 50_000
    assert ImageStat.Stat(image).stddev[0] > 10  # text and plots, not a blank page
    assert "report.html" in _report_artifacts(outcome.tracking_uri, space.name)


def test_net_log_catches_a_page_that_does_fetch(tmp_path: Path) -> None:
    """The control: the same check does see a page's requests (refused offline, but attempted)."""
    page = tmp_path / "fetches.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    rendering = render(page, tmp_path / "chromium", height=400)
    assert rendering.page_requests == ["http://127.0.0.1:9/x.png"]
