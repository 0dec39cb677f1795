"""The examples run as shipped (``python examples/NAME.py``) and print what their searches really found.

Each runs in a subprocess with its own short ``TMPDIR`` (the examples keep their results in
``tempfile.mkdtemp()`` folders, and Ray's session sockets live under ``$TMPDIR`` too, whose
paths must stay short); the test then reads the search's MLflow store and checks that the
printed best is the best run there.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import search_tree

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # a real Ray search each, about 20-35 s on 2 cores


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hx-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run_example(name: str, tmpdir: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / f"{name}.py")],
        cwd=tmpdir,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def _best_child(children: list, metric: str, mode: str) -> object:
    scored = [r for r in children if metric in r.data.metrics]
    pick = max if mode == "max" else min
    return pick(scored, key=lambda r: r.data.metrics[metric])


def test_the_python_api_example_prints_the_ranking_its_mlflow_runs_hold(short_tmpdir: Path) -> None:
    out = _run_example("python_api", short_tmpdir)
    rows = re.findall(r"^(\d+) (\w+) (completed|stopped early|failed) (\S+) (\{.*\})$", out, re.MULTILINE)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4], out
    values = [float(r[3]) for r in rows]
    assert values == sorted(values, reverse=True)  # val/score, mode max
    best_id, best_params = rows[0][1], ast.literal_eval(rows[0][4])
    best_dir = Path(re.search(r"^best config: (.+)$", out, re.MULTILINE).group(1))
    uri = re.search(r"^mlflow ui --backend-store-uri (\S+)$", out, re.MULTILINE).group(1)
    config = yaml.safe_load((best_dir / "best_config.yaml").read_text())
    assert config["trial_id"] == best_id and config["sampled"] == best_params
    assert (best_dir / "weights" / "best.json").exists()
    parent, children = search_tree(uri, "synthetic_test")
    assert parent.info.status == "FINISHED"
    assert len(children) == 4 and "RUNNING" not in {r.info.status for r in children}
    best = _best_child(children, "best/val/score", "max")
    assert best.info.run_id == config["mlflow"]["run_id"] == parent.data.tags["hemotune.best_run_id"]
    assert float(best.data.params["lr"]) == pytest.approx(best_params["lr"])
    assert best.data.metrics["best/val/score"] == pytest.approx(values[0])


def test_the_custom_trainer_example_registers_its_trainer_and_prints_the_best_lr(short_tmpdir: Path) -> None:
    out = _run_example("custom_trainer", short_tmpdir)
    match = re.search(r"^best lr: (\{.*\})$", out, re.MULTILINE)
    assert match, out
    best_lr = ast.literal_eval(match.group(1))["lr"]
    (store,) = short_tmpdir.glob("tmp*/results/mlflow.db")  # the example's tempfile.mkdtemp() data folder
    parent, children = search_tree(f"sqlite:///{store}", "quadratic")
    assert parent.info.status == "FINISHED"
    assert len(children) == 4 and "RUNNING" not in {r.info.status for r in children}
    assert parent.data.tags["hemotune.trainer"] == "quadratic_example"
    best = _best_child(children, "best/val/loss", "min")
    assert best.info.run_id == parent.data.tags["hemotune.best_run_id"]
    assert float(best.data.params["lr"]) == pytest.approx(best_lr)
    # every trial ran the registered trainer's own code: from w = 0, n steps of gradient descent on
    # (w - 3)^2 leave a loss of 9 (1 - 2 lr)^(2n)
    for run in children:
        lr, epoch = float(run.data.params["lr"]), int(run.data.metrics["best_epoch"])
        assert run.data.metrics["best/val/loss"] == pytest.approx(9 * (1 - 2 * lr) ** (2 * epoch), rel=1e-9)
