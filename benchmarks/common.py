"""Shared pieces of the benchmark scripts: machine and versions, targets, peak memory, the result JSON.

Every ``benchmarks/<name>/run.py`` writes ``benchmarks/results/<name>.json`` with the same
envelope, so that results taken on different machines or commits are compared only like
for like::

    {"name", "date", "smoke", "machine": {...}, "versions": {...}, "settings": {...},
     "targets": [{"name", "target", "measured", "unit", "met"}], ...the benchmark's own figures}

Conventions for a script (run as ``python benchmarks/<name>/run.py``; it puts the repository
root on ``sys.path`` and does ``from benchmarks import common``):

* ``add_common_args(parser)`` gives ``--smoke`` (a tiny, fast version for the tests: its
  figures measure nothing and it writes ``<name>-smoke.json``) and ``--out`` (the results
  folder, default ``benchmarks/results``);
* ``target(...)`` records one target with its measured value and whether it was met;
* ``write_result(name, payload, ...)`` adds the envelope and writes the file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: The real datasets (bccd, pbc8, all_leukemia), as the tests' fixtures find them.
DATASETS = REPO.parent / "shared" / "datasets"
#: Distributions whose versions a result records (absent ones are recorded as None).
PACKAGES = ("torch", "torchvision", "timm", "ultralytics", "ray", "optuna", "mlflow", "hemotune")
#: The lock every heavy run takes, so that helpers and benchmarks do not share the cores.
HEAVY_LOCK = "/tmp/hemotune-heavy.lock"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores (and those this process may use), RAM, OS: what makes numbers comparable."""
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        gpus = [g.strip() for g in out.splitlines() if g.strip()] or None
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    """The repository's HEAD commit, with ``+dirty`` when the working tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def versions(extra: Sequence[str] = ()) -> dict[str, str | None]:
    """Python, the stack's packages (installed distribution versions, no import needed) and the git commit."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*PACKAGES, *extra):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["git_commit"] = git_commit()
    return found


def target(
    name: str,
    measured: float | None,
    limit: float,
    *,
    unit: str = "",
    higher_is_better: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """One target: ``measured <= limit`` (or ``>=`` with ``higher_is_better``; ``<`` / ``>`` with
    ``strict``); unmeasured is not met."""
    ok = measured is not None and math.isfinite(measured)
    if not ok:
        met = False
    elif higher_is_better:
        met = measured > limit if strict else measured >= limit  # type: ignore[operator]
    else:
        met = measured < limit if strict else measured <= limit  # type: ignore[operator]
    sign = (">" if higher_is_better else "<") + ("" if strict else "=")
    return {
        "name": name,
        "target": f"{sign} {limit:g}{(' ' + unit) if unit else ''}",
        "limit": limit,
        "measured": round(measured, 4) if ok else None,  # type: ignore[arg-type]
        "unit": unit,
        "met": bool(met),
    }


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--smoke`` and ``--out``, the same in every benchmark script."""
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes to check the script (figures mean nothing)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)"
    )
    return parser


def add_data_root_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--data-root``: the folder holding bccd/, pbc8/, all_leukemia/ (default ../shared/datasets)."""
    parser.add_argument(
        "--data-root", type=Path, default=DATASETS, help="folder of bccd/, pbc8/, all_leukemia/"
    )
    return parser


def result_path(name: str, out: Path = RESULTS, smoke: bool = False) -> Path:
    """``<out>/<name>.json``, or ``<name>-smoke.json`` for a smoke run (never overwrites real figures)."""
    return Path(out) / f"{name}{'-smoke' if smoke else ''}.json"


def write_result(
    name: str,
    payload: Mapping[str, Any],
    *,
    out: Path = RESULTS,
    smoke: bool = False,
    targets: Sequence[Mapping[str, Any]] = (),
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``payload`` with the envelope (name, date, machine, versions, settings, targets); return the path."""
    doc: dict[str, Any] = {
        "name": name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "smoke": smoke,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "versions": versions(),
        "settings": dict(settings or {}),
        "targets": [dict(t) for t in targets],
        **payload,
    }
    path = result_path(name, out, smoke)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def publish(
    name: str,
    payload: Mapping[str, Any],
    *,
    out: Path = RESULTS,
    smoke: bool = False,
    targets: Sequence[Mapping[str, Any]] = (),
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """How every benchmark ends: ``write_result``, then each target and the file written, printed."""
    path = write_result(name, payload, out=out, smoke=smoke, targets=targets, settings=settings)
    print_targets(targets)
    print(f"wrote {path}")
    return path


def print_targets(targets: Sequence[Mapping[str, Any]]) -> None:
    """One line per target: name, measured, target, met."""
    for t in targets:
        print(f"  target {t['name']}: measured {t['measured']} {t['unit']} ({t['target']}) met={t['met']}")


def tree_rss(pid: int) -> int:
    """Summed RSS in bytes of a process and all its descendants (0 once it is gone)."""
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class PeakTreeRss(threading.Thread):
    """Samples the summed RSS of a process tree every ``interval`` seconds; ``peak`` is the maximum seen.

    Summed RSS counts shared pages once per process, so it overstates a tree of forked
    workers a little; it is the same measure for both sides of a comparison.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        """Stop sampling and return the peak in bytes."""
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak


def timed_command(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Run ``cmd``: exit code, wall seconds, peak tree RSS (GiB), and each output line with its time.

    ``started`` is the wall-clock time (``time.time()``) just before the process was
    started; ``lines`` holds ``[seconds since started, line]`` pairs, stamped as the
    lines arrive (the command should write unbuffered: ``PYTHONUNBUFFERED=1``).
    """

    started = time.time()
    began = time.monotonic()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampler = PeakTreeRss(proc.pid)
    sampler.start()
    lines: list[list[Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append([round(time.monotonic() - began, 3), line.rstrip("\n")])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=10)
    wall = time.monotonic() - began
    peak = sampler.stop()
    return {
        "exit_code": proc.returncode,
        "started": started,
        "wall_s": round(wall, 3),
        "peak_rss_gib": round(peak / 2**30, 3),
        "lines": lines,
    }


def fmt_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (what the scripts print and the READMEs quote)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
