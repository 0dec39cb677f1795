"""Shared test helpers: MLflow inspection, process-tree cleanup by PID, synthetic spaces."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC = REPO / "tests" / "spaces" / "synthetic.yaml"


def base_doc(tmp_path: Path) -> dict:
    """tests/spaces/synthetic.yaml as a document whose dataset is ``tmp_path``."""
    doc = yaml.safe_load(SYNTHETIC.read_text())
    doc["dataset"]["path"] = str(tmp_path)
    return doc


def write(tmp_path: Path, doc: dict | str, name: str = "space.yaml") -> Path:
    """A space file in ``tmp_path`` holding ``doc`` (a document, or raw YAML text)."""
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


#: Synthetic-trainer points with known outcomes: a good curve, a bad one, one that fails at epoch 2,
#: and the parameters that sample around them (the ASHA and report searches use them).
GOOD = {"lr": 0.01, "plateau": 1.0, "fail_at_epoch": 0}
BAD = {"lr": 1.0e-5, "plateau": 0.2, "fail_at_epoch": 0}
FAILING = {"lr": 0.01, "plateau": 0.9, "fail_at_epoch": 2}
CURVE_PARAMETERS = {
    "lr": {"type": "float", "low": 1.0e-5, "high": 1.0, "log": True},
    "plateau": {"type": "float", "low": 0.2, "high": 1.0},
    "fail_at_epoch": {"type": "categorical", "choices": [0, 2]},
}


def synthetic_space_file(tmp_path: Path, name: str = "synthetic_test", **updates: Any) -> Path:
    """A copy of tests/spaces/synthetic.yaml with top-level sections updated (dicts merge)."""
    doc = yaml.safe_load(SYNTHETIC.read_text())
    doc["name"] = name
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "README").write_text("synthetic curves need no data\n")
    doc["dataset"]["path"] = str(data)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


#: The four arms of the synthetic ablation grid (plateau x optimizer): baseline, two factors, both.
ABLATION_ARMS = {
    "baseline": {"plateau": 0.6, "optimizer": "SGD"},
    "bigger": {"plateau": 0.8, "optimizer": "SGD"},
    "adam": {"plateau": 0.6, "optimizer": "AdamW"},
    "both": {"plateau": 0.8, "optimizer": "AdamW"},
}
ABLATION = {"baseline": "baseline", "factors": ["bigger", "adam"], "combined": "both"}


def ablation_space_file(tmp_path: Path, name: str, repeats: int) -> Path:
    """A synthetic grid over ABLATION_ARMS with an ``ablation:`` section, ``repeats`` seeds per arm."""
    path = synthetic_space_file(
        tmp_path,
        name=name,
        parameters={
            "plateau": {"type": "categorical", "choices": [0.6, 0.8]},
            "optimizer": {"type": "categorical", "choices": ["SGD", "AdamW"]},
        },
        fixed={"lr": 0.01, "best_lr": 0.01, "rate": 0.6, "seconds_per_epoch": 0.0, "seed_noise": 0.02},
        points_to_evaluate=[],
        budget={"epochs": 2, "grace_period": 2, "max_concurrent": 2},
        search={
            "sampler": "grid",
            "scheduler": "none",
            "grid": {"points": ABLATION_ARMS, "repeats": repeats},
        },
        ablation=ABLATION,
    )
    doc = yaml.safe_load(path.read_text())
    doc["parameters"].pop("lr")  # fixed here: the grid varies plateau and optimizer only
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def mlflow_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def search_tree(uri: str, experiment: str) -> tuple[Any, list[Any]]:
    """(parent run, child runs) of the single search in MLflow experiment ``experiment``."""
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children


def epoch_steps(uri: str, run_id: str, key: str = "epoch") -> list[int]:
    return sorted(int(m.step) for m in mlflow_client(uri).get_metric_history(run_id, key))


def descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children(recursive=True)
    return []


def kill_pids(processes: Iterable[psutil.Process], sig: int = signal.SIGKILL) -> None:
    """End exactly these processes (never a name sweep)."""
    procs = list(processes)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)
    psutil.wait_procs(procs, timeout=10)


class Driver:
    """A ``hemotune`` CLI process whose whole process tree the test ends by PID."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.log = cwd / f"driver-{int(time.time() * 1000)}.log"
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hemotune", *args],
            cwd=cwd,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.seen: dict[int, psutil.Process] = {}

    def snapshot(self) -> None:
        for proc in descendants(self.proc.pid):
            self.seen[proc.pid] = proc

    def wait(self, timeout: float) -> int:
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self.snapshot()
            time.sleep(0.5)
        return self.proc.wait(timeout=max(1.0, deadline - time.time()))

    def output(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text()

    def cleanup(self) -> None:
        self.snapshot()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        kill_pids([p for p in self.seen.values() if p.is_running()])
        self._fh.close()


def wait_until(predicate: Any, timeout: float, interval: float = 1.0, driver: Driver | None = None) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver is not None:
            driver.snapshot()
            if driver.proc.poll() is not None:
                return bool(predicate())
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(interval)
    return False
