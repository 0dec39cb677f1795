"""The seeded chaos run's pieces: its kill schedule, what each kill does, and the invariants checked after.

Used by ``tests/cluster_tests/test_chaos.py`` (marked ``chaos``) and by
``benchmarks/chaos/run.py``, which runs that test and keeps its figures. One
``random.Random(seed)`` draws every time and every victim, so a seed that breaks
something can be run again (``HEMOTUNE_CHAOS_SEED=...``); the seed is printed.

Every process is ended by PID: a worker node is its ``ray start --block`` tree
(``cluster_stack.Service``), a trial process is one PID among that node's
descendants (the Ray worker whose process title names Tune's function trainable,
``ray::ImplicitFunc``), the driver is its own ``Service`` tree.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from cluster_stack import Service, Stack

#: How many kills of each kind one chaos run makes.
KILLS = {"worker_node": 2, "trial_process": 4, "mlflow_server": 1, "driver": 1}
#: The MLflow server stays down this long before its restart (which itself takes 10-18 s).
MLFLOW_DOWN_S = 20.0
#: Seconds between two kills at least (a node restart and Ray noticing a death take a few).
MIN_GAP_S = 7.0
#: No driver kill from this long before the MLflow outage until this long after it began:
#: a resumed driver needs the MLflow server to start (it exits 2 when it cannot reach it).
MLFLOW_KEEP_OUT_S = (12.0, MLFLOW_DOWN_S + 30.0)
#: The driver is killed only once its search is under way (its Tune experiment is in S3), and the
#: MLflow server stopped only once the driver has opened its parent run (5 s earlier at most).
DRIVER_NOT_BEFORE_S = 30.0


@dataclass(frozen=True)
class Kill:
    """One scheduled kill: ``at`` seconds after the search started, of ``kind``."""

    at: float
    kind: str
    #: A worker node: seconds until its replacement starts; else unused.
    restart_after: float = 0.0


def draw_schedule(rng: random.Random, window: tuple[float, float]) -> list[Kill]:
    """Every kill of ``KILLS`` at a random time in ``window`` (seconds), ``MIN_GAP_S`` apart, sorted.

    Rejection sampling: draw all times, keep the first draw that honours the gaps and
    keeps the driver kill away from the MLflow outage.
    """
    kinds = [kind for kind, count in KILLS.items() for _ in range(count)]
    for _ in range(10_000):
        times = [rng.uniform(*window) for _ in kinds]
        ordered = sorted(times)
        if any(b - a < MIN_GAP_S for a, b in itertools.pairwise(ordered)):
            continue
        at = dict(enumerate(times))
        mlflow_at = at[kinds.index("mlflow_server")]
        driver_at = at[kinds.index("driver")]
        if driver_at < DRIVER_NOT_BEFORE_S or mlflow_at < DRIVER_NOT_BEFORE_S - 5:
            continue
        if mlflow_at - MLFLOW_KEEP_OUT_S[0] < driver_at < mlflow_at + MLFLOW_KEEP_OUT_S[1]:
            continue
        kills = [
            Kill(round(t, 1), kind, round(rng.uniform(2.0, 6.0), 1) if kind == "worker_node" else 0.0)
            for kind, t in zip(kinds, times, strict=True)
        ]
        return sorted(kills, key=lambda k: k.at)
    raise RuntimeError(f"no schedule fits the window {window}; widen it")


def trial_processes(stack: Stack) -> list[psutil.Process]:
    """The live Ray worker processes running a Tune trial, on every live worker node (by PID)."""
    found = []
    for name in stack.ray.live_workers():
        for proc in stack.ray.nodes[name].snapshot():
            with contextlib.suppress(psutil.Error):
                title = " ".join(proc.cmdline())
                if title.startswith("ray::ImplicitFunc") and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
    return found


@dataclass
class Chaos:
    """Runs a schedule against a stack and one search's driver; records what each kill hit."""

    stack: Stack
    rng: random.Random
    schedule: list[Kill]
    #: () -> the driver ``Service`` now; (old driver) -> the resumed one. Set by the test.
    driver: Any
    resume: Any
    done: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: True from a driver kill until its resumed driver has started (the search is not over then).
    replacing_driver: bool = False

    def run(self, started: float, finished: Any) -> None:
        """Fire each kill at its time (in a thread of its own: restarts take seconds) until ``finished()``."""
        for kill in self.schedule:
            while time.time() < started + kill.at:
                if finished():
                    return
                time.sleep(0.1)
            thread = threading.Thread(target=self._fire, args=(kill, started), daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float = 120.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _fire(self, kill: Kill, started: float) -> None:
        record: dict[str, Any] = {
            "kind": kill.kind,
            "scheduled_s": kill.at,
            "at_s": round(time.time() - started, 1),
        }
        try:
            record.update(getattr(self, f"_kill_{kill.kind}")(kill))
        except Exception as exc:  # reported by the test, with the figures
            self.errors.append(f"{kill.kind} at {kill.at}s: {type(exc).__name__}: {exc}")
            record["error"] = str(exc)
        with self._lock:
            self.done.append(record)

    def _kill_worker_node(self, kill: Kill) -> dict[str, Any]:
        with self._lock:
            busy = [n for n in self.stack.ray.live_workers() if _runs_a_trial(self.stack, n)]
            victim = self.rng.choice(sorted(busy or self.stack.ray.live_workers()))
            pids = self.stack.ray.kill_node(victim)
        time.sleep(kill.restart_after)
        with self._lock:
            added = self.stack.ensure_workers(2)
        return {"victim": victim, "pids": len(pids), "replaced_by": added, "had_trial": bool(busy)}

    def _kill_trial_process(self, kill: Kill) -> dict[str, Any]:
        deadline = time.time() + 15
        while time.time() < deadline:
            with self._lock:
                procs = sorted(trial_processes(self.stack), key=lambda p: p.pid)
                if procs:
                    victim = self.rng.choice(procs)
                    title = " ".join(victim.cmdline())
                    victim.send_signal(signal.SIGKILL)
                    return {"pid": victim.pid, "title": title}
            time.sleep(0.5)
        raise RuntimeError("no trial process ran for 15 s")

    def _kill_mlflow_server(self, kill: Kill) -> dict[str, Any]:
        down = time.time()
        self.stack.mlflow.stop()
        time.sleep(MLFLOW_DOWN_S)
        restart_s = self.stack.mlflow.start()
        return {"down_s": round(time.time() - down, 1), "restart_s": round(restart_s, 1)}

    def _kill_driver(self, kill: Kill) -> dict[str, Any]:
        old: Service = self.driver()
        assert old.alive(), "the driver had already exited"
        self.replacing_driver = True
        try:
            old.kill(signal.SIGKILL)
            new = self.resume(old)
        finally:
            self.replacing_driver = False
        return {"killed_pid": old.proc.pid, "resumed_pid": new.proc.pid}


def _runs_a_trial(stack: Stack, node: str) -> bool:
    return any(p in stack.ray.nodes[node].snapshot() for p in trial_processes(stack))


# ----------------------------------------------------------------------------- invariants


def tune_rows(stack: Stack, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """trial id -> the result rows Tune stored in S3 for it (one per reported epoch, repeats included)."""
    out = {}
    for key in stack.keys(prefix + "/"):
        match = re.fullmatch(rf"{re.escape(prefix)}/trial_([^/]+)/result\.json", key)
        if match:
            text = stack.read(key).decode()
            out[match.group(1)] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return out


def tune_statuses(stack: Stack, prefix: str) -> dict[str, str]:
    """trial id -> status in the newest experiment state Tune saved to S3."""
    states = sorted(
        k
        for k in stack.keys(prefix + "/")
        if re.fullmatch(rf"{re.escape(prefix)}/experiment_state-.*\.json", k)
    )
    data = json.loads(stack.read(states[-1]))
    return {t["trial_id"]: t["status"] for t in (json.loads(trial) for trial, _ in data["trial_data"])}


def redone_epochs(trial_id: str, rows: list[dict[str, Any]], epochs: int, problems: list[str]) -> int:
    """Epochs Tune recorded twice for a trial; a history that is not 1..N with repeats only at restores is a problem."""
    seen = [int(r["epoch"]) for r in rows]
    if sorted(set(seen)) != list(range(1, epochs + 1)):
        problems.append(f"tune: trial {trial_id} epochs {seen}, not 1..{epochs}")
    for i in range(1, len(rows)):
        if seen[i] <= seen[i - 1] and int(rows[i]["iterations_since_restore"]) != 1:
            problems.append(f"tune: trial {trial_id} steps back without a restore: {seen}")
        elif seen[i] > seen[i - 1] + 1:
            problems.append(f"tune: trial {trial_id} skips epochs: {seen}")
    return len(seen) - len(set(seen))


def restores(rows: list[dict[str, Any]]) -> int:
    """How often Tune restored the trial from a checkpoint (a row after the first with a fresh restore count)."""
    return sum(1 for r in rows[1:] if int(r["iterations_since_restore"]) == 1)


def optuna_trials(journal: Path) -> list[Any]:
    """The trials of the search's Optuna study, read back from its journal file."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name="hemotune", storage=storage).get_trials(deepcopy=False)


def ranking_order(markdown: str) -> list[str]:
    """The trial ids of ``ranking.md``, in its order."""
    return re.findall(r"^\| \d+ \| (\w+) \|", markdown, flags=re.M)


def write_figures(path: Path | None, figures: dict[str, Any]) -> None:
    """Print the figures; also write them as JSON to ``path`` when given (the benchmark keeps them)."""
    text = json.dumps(figures, indent=2, default=str)
    print(f"\nchaos figures:\n{text}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
