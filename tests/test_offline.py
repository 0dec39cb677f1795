"""hemotune keeps itself offline: real searches, none of the harness's network settings, every connect recorded.

tests/conftest.py routes this test process's HTTP to a closed loopback port and sets the
offline variables, and every subprocess would inherit them. The searches here run in a
subprocess whose environment has none of that (no proxy, no ``no_proxy``, no MLflow, Ray,
Ultralytics or Hugging Face variables, a fresh HOME and cache), so whatever keeps them
offline must be hemotune's own doing. Up to three layers watch them:

1. A Python audit hook (``tests/netaudit/sitecustomize.py`` on PYTHONPATH) in every Python
   process the search starts, driver, Ray's agents and dashboard, trial workers: it records
   each connect, send and name lookup, and refuses one that would leave the machine before
   the system call is made. Always on.
2. A network namespace (``unshare -n``, only ``lo`` inside) when this machine allows one:
   nothing can leave, whatever any process (C++ ones included) tries.
3. Inside the namespace, ``strace -f`` of every connect/send system call of every process,
   Ray's C++ GCS and raylet included, which the audit hook cannot see.

The assertion: no recorded connect, send or lookup targets anything but loopback, unix or
netlink sockets. The negative control plants downloads in a trainer (and, separately, takes
away hemotune's routing of Ray's HTTP) and checks that the same assertion catches them.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from helpers import kill_pids, search_tree, synthetic_space_file

from hemotune.offline import CLOSED_LOOPBACK_PROXY, LOOPBACK_HOSTS, local_ray_env, offline_env, temporary_env

REPO = Path(__file__).resolve().parent.parent
NETAUDIT = REPO / "tests" / "netaudit"
HEMOTUNE = Path(sys.executable).parent / "hemotune"
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
#: Set by the harness (tests/conftest.py, .ci/run) or by hemotune in this test process: none
#: of them reaches the audited search.
HARNESS_VARS = (
    *PROXY_VARS,
    "no_proxy",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "MLFLOW_DISABLE_TELEMETRY",
    "RAY_USAGE_STATS_ENABLED",
    "YOLO_OFFLINE",
    "HF_HUB_OFFLINE",
    *offline_env(),
)
HARNESS_PREFIXES = ("RAY_", "MLFLOW_", "YOLO_", "HF_", "TUNE_", "HEMOTUNE_", "XDG_")
STRACE_CALLS = "connect,sendto,sendmsg,sendmmsg"
_INET_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6?, "([^"]+)"')


def _loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # not an address we can read: count it as off the machine
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


@functools.cache
def _netns_prefix() -> tuple[str, ...]:
    """A command prefix that runs a program in a fresh network namespace with only ``lo`` (up), or ()."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        return ()
    for flags in (["-n"], ["-rn"]):  # root; else an unprivileged user namespace
        prefix = (unshare, *flags, "sh", "-c", '"$0" link set lo up && exec "$@"', ip)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            probe = subprocess.run(
                [*prefix, "cat", "/proc/self/net/dev"], capture_output=True, text=True, timeout=20
            )
            interfaces = {line.split(":", 1)[0].strip() for line in probe.stdout.splitlines()[2:]}
            if probe.returncode == 0 and interfaces == {"lo"}:
                return prefix
    return ()


@functools.cache
def _strace_usable() -> bool:
    strace = shutil.which("strace")
    if not strace:
        return False
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(
            [strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o", os.devnull, "true"],
            capture_output=True,
            timeout=20,
        )
        return probe.returncode == 0
    return False


@dataclass
class AuditedRun:
    """One audited program run: its exit, output and every record the layers made."""

    proc: subprocess.CompletedProcess[str]
    records: list[dict[str, Any]]
    syscalls: list[str]
    layers: list[str]

    def argv0(self, pid: int) -> str:
        starts = [r for r in self.records if r["pid"] == pid and r["event"] == "start"]
        return " ".join(str(a) for a in starts[-1]["argv"][:2]) if starts else "?"

    def violations(self) -> list[str]:
        """Every connect, send or lookup that targets something off this machine, from any layer."""
        found = [
            f"pid {r['pid']} ({self.argv0(r['pid'])}): {r['call']} {r.get('address', r.get('host'))!r}"
            for r in self.records
            if r["event"] in ("connect", "lookup") and not r["local"]
        ]
        for line in self.syscalls:
            for match in _INET_ADDRESS.finditer(line):
                if not _loopback(match.group(1) or match.group(2)):
                    found.append(f"system call: {line.strip()}")
                    break
        return found

    def processes(self, script: str) -> list[int]:
        """Pids of audited Python processes whose (last) program is ``script``."""
        pids = {r["pid"] for r in self.records if r["event"] == "start"}
        return sorted(p for p in pids if script in self.argv0(p))

    def imported(self, module: str) -> dict[int, dict[str, str | None]]:
        """pid -> watched environment at the moment the process first imported ``module``."""
        return {r["pid"]: r["env"] for r in self.records if r["event"] == "import" and r["module"] == module}

    def summary(self) -> str:
        kinds = sorted(
            {self.argv0(p).split()[0].rsplit("/", 1)[-1] for p in {r["pid"] for r in self.records}}
        )
        connects = sorted(
            {
                f"{r['call']} {r.get('address', r.get('host'))}"
                for r in self.records
                if r["event"] in ("connect", "lookup")
            }
        )
        return (
            f"layers {self.layers}; {len({r['pid'] for r in self.records})} Python processes audited "
            f"({', '.join(kinds)}); Python-level network calls: {connects}; "
            f"{len(self.syscalls)} connect/send system calls traced"
        )


def _clean_env(tmp: Path) -> dict[str, str]:
    """This process's environment without anything the harness (or hemotune, here) set."""
    env = {
        k: v for k, v in os.environ.items() if k not in HARNESS_VARS and not k.startswith(HARNESS_PREFIXES)
    }
    env.pop("PYTHONPATH", None)
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "audit").mkdir(exist_ok=True)
    env.update(
        HOME=str(tmp / "home"),  # no ~/ray_bootstrap_config.yaml, no user settings of any library
        HEMOTUNE_CACHE_DIR=str(tmp / "cache"),  # fresh: hemotune must install its Ultralytics font itself
        HEMOTUNE_NETAUDIT_DIR=str(tmp / "audit"),
        HEMOTUNE_NETAUDIT_WATCH=",".join(HARNESS_VARS),
        PYTHONPATH=str(NETAUDIT),
        PYTHONUNBUFFERED="1",
    )
    return env


def _leftovers(audit_dir: str) -> list[psutil.Process]:
    """Processes still running with this run's audit folder in their environment (ours, by marker)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get("HEMOTUNE_NETAUDIT_DIR") == audit_dir:
                found.append(proc)
    return found


def run_audited(tmp: Path, argv: list[str], timeout: float = 600) -> AuditedRun:
    """Run ``argv`` in ``tmp`` with a clean environment under every layer this machine allows."""
    env = _clean_env(tmp)
    layers, command = ["audit hook"], list(argv)
    strace_log = tmp / "strace.txt"
    if _netns_prefix():
        layers.append("network namespace")
        if _strace_usable():
            layers.append("strace")
            trace = [
                shutil.which("strace") or "strace",
                "-f",
                "-qq",
                "--seccomp-bpf",
                "-e",
                f"trace={STRACE_CALLS}",
                "-e",
                "signal=none",
            ]
            command = [*trace, "-o", str(strace_log), *command]
        command = [*_netns_prefix(), *command]
    try:
        proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        stray = _leftovers(env["HEMOTUNE_NETAUDIT_DIR"])
        psutil.wait_procs(stray, timeout=10)
        kill_pids([p for p in stray if p.is_running()])
    records = [
        json.loads(line)
        for path in sorted((tmp / "audit").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    syscalls = [
        line
        for line in (strace_log.read_text().splitlines() if strace_log.exists() else [])
        if "AF_INET" in line
    ]
    return AuditedRun(proc, records, syscalls, layers)


def _expected_offline_env(tmp: Path) -> dict[str, str]:
    """What hemotune's ``offline_env()`` is for the audited run's cache folder."""
    with temporary_env({"HEMOTUNE_CACHE_DIR": str(tmp / "cache")}):
        return offline_env()


def assert_offline(run: AuditedRun, tmp: Path) -> None:
    """No network call left the machine, and hemotune itself set what kept each process offline."""
    output = run.proc.stdout + run.proc.stderr
    print(run.summary())  # what was watched and seen (pytest -rP shows it)
    assert run.proc.returncode == 0, output[-4000:]
    assert run.violations() == [], f"{run.summary()}\n{output[-2000:]}"
    drivers = run.processes("hemotune search") or run.processes("planted.py")
    assert len(drivers) == 1, run.summary()
    driver = drivers[0]
    # the audited search started without any of the harness's variables: what follows is hemotune's doing
    start = next(r for r in run.records if r["pid"] == driver and r["event"] == "start")
    assert {k: v for k, v in start["env"].items() if v is not None} == {}
    # every Ray process hemotune started locally ran with HTTP routed to a closed loopback port
    # and hemotune's offline variables (Ray's dashboard otherwise probes 169.254.169.254)
    expected = _expected_offline_env(tmp)
    ray_spawns = [
        r
        for r in run.records
        if r["event"] == "spawn"
        and r["pid"] == driver
        and "/ray/" in " ".join(map(str, [r["program"], *r["argv"]]))
    ]
    assert ray_spawns, run.summary()
    for spawn in ray_spawns:
        env = spawn["env"]
        assert {k: env[k] for k in PROXY_VARS} == dict.fromkeys(PROXY_VARS, CLOSED_LOOPBACK_PROXY), spawn
        assert set(LOOPBACK_HOSTS.split(",")) <= set(str(env["no_proxy"]).split(",")), spawn
        assert {k: env[k] for k in expected} == expected, spawn
    assert run.processes("dashboard"), run.summary()  # the process that would probe was audited
    # trials ran in audited Ray workers, with hemotune's offline variables and the caller's
    # proxies (none here), not the closed port
    trials = {pid: env for pid, env in run.imported("hemotune.tuning.trial").items() if pid != driver}
    assert trials and set(trials) <= set(run.processes("default_worker.py")), run.summary()
    for env in trials.values():
        assert {k: env[k] for k in expected} == expected, env
        assert all(not env[k] for k in PROXY_VARS), env


def test_the_audit_hook_records_and_refuses_before_the_system_call(tmp_path: Path) -> None:
    code = (
        "import socket, sitecustomize\n"
        "assert sitecustomize._DIR, 'the audit hook is not installed'\n"  # never connect without it
        "for target in [('203.0.113.1', 80), ('weights.hemotune-planted.example', 80)]:\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=1)\n"
        "    except PermissionError as exc:\n"
        "        print('REFUSED', type(exc).__name__)\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.connect(('127.0.0.1', 9))\n"
        "s.close()\n"
    )
    run = run_audited(tmp_path, [sys.executable, "-c", code], timeout=60)
    assert run.proc.returncode == 0, run.proc.stderr
    assert run.proc.stdout.splitlines() == ["REFUSED PermissionError"] * 2, run.proc.stdout
    violations = run.violations()
    assert len(violations) == 2, violations
    assert "203.0.113.1" in violations[0] and "weights.hemotune-planted.example" in violations[1]
    loopback = [r for r in run.records if r["event"] == "connect" and r["local"]]
    assert [r["address"] for r in loopback] == [["127.0.0.1", 9]]
    assert run.syscalls == [] or all("127.0.0.1" in line for line in run.syscalls)  # refused: never a syscall


def test_local_ray_env_routes_ray_http_to_a_closed_port_and_keeps_the_callers_proxies_for_trials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "mlflow.internal")
    monkeypatch.delenv("NO_PROXY", raising=False)
    with local_ray_env() as trial_env:
        assert {k: os.environ[k] for k in PROXY_VARS} == dict.fromkeys(PROXY_VARS, CLOSED_LOOPBACK_PROXY)
        assert os.environ["no_proxy"] == os.environ["NO_PROXY"] == f"mlflow.internal,{LOOPBACK_HOSTS}"
        assert trial_env == {**dict.fromkeys(PROXY_VARS, ""), "https_proxy": "http://proxy.example:3128"}
    assert os.environ["https_proxy"] == "http://proxy.example:3128"
    assert os.environ["no_proxy"] == "mlflow.internal"
    assert "http_proxy" not in os.environ and "NO_PROXY" not in os.environ


def _synthetic_space(tmp: Path, trainer: str = "synthetic_curves") -> Path:
    return synthetic_space_file(
        tmp,
        name=f"offline_{trainer}",
        trainer=trainer,
        fixed={"seconds_per_epoch": 0.0},
        budget={"num_samples": 2, "max_concurrent": 2, "epochs": 2, "grace_period": 1},
    )


@pytest.mark.slow  # a real Ray search, about 25-30 s
def test_a_search_without_the_harness_settings_stays_on_loopback(tmp_path: Path) -> None:
    space = _synthetic_space(tmp_path)
    run = run_audited(
        tmp_path, [str(HEMOTUNE), "search", str(space), "--results-dir", str(tmp_path / "results")]
    )
    assert_offline(run, tmp_path)
    assert "best: trial" in run.proc.stdout
    assert len(run.imported("hemotune.tuning.trial")) >= 2  # the driver and at least one trial worker
    _, children = search_tree(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}", "offline_synthetic_curves")
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)


def _by(violations: list[str], pids: list[int]) -> list[str]:
    """The audit-hook violations recorded by the processes ``pids``."""
    return [v for v in violations if v.startswith("pid ") and int(v.split()[1]) in pids]


@pytest.mark.slow
def test_planted_downloads_and_unrouted_ray_processes_are_caught(tmp_path: Path) -> None:
    space = _synthetic_space(tmp_path, trainer="planted_download")
    planted = [sys.executable, str(NETAUDIT / "planted.py"), "--unrouted"]
    run = run_audited(tmp_path, [*planted, "search", str(space), "--results-dir", str(tmp_path / "results")])
    output = run.proc.stdout + run.proc.stderr
    # the search itself succeeds: the trainer swallows its failed downloads, as a careless one would
    assert run.proc.returncode == 0, output[-4000:]
    assert "best: trial" in run.proc.stdout
    violations = run.violations()
    print(run.summary(), *violations, sep="\n")
    by_trials = _by(violations, run.processes("default_worker.py"))
    assert any("'203.0.113.1', 80" in v for v in by_trials), violations
    assert any("weights.hemotune-planted.example" in v for v in by_trials), violations
    # without hemotune's routing, Ray's dashboard probes the cloud metadata address
    assert _by(violations, run.processes("dashboard")), violations
    if (
        "strace" in run.layers
    ):  # a connect from a program that is not Python: only the system-call trace sees it
        assert any("203.0.113.2" in v for v in violations if v.startswith("system call")), violations


@pytest.mark.slow
def test_the_readme_detection_smoke_search_stays_on_loopback(tmp_path: Path, bccd_dir: Path) -> None:
    """The README's main command (shrunk: 1 trial x 1 epoch on 16 + 8 images at 64 px) under the audit."""
    shrink = [
        "budget.num_samples=1",
        "budget.epochs=1",
        "budget.grace_period=1",  # the smoke preset's ASHA rung is at epoch 5
        "dataset.max_train_images=16",  # 4 micro-batches of 4: accumulate_steps 4 is not capped
        "dataset.max_val_images=8",
        "fixed.imgsz=64",
        "fixed.batch=4",
    ]
    argv = [str(HEMOTUNE), "search", "bcd_loss_weights", "--preset", "smoke", "--data", str(bccd_dir)]
    argv += [arg for value in shrink for arg in ("--set", value)]
    run = run_audited(tmp_path, [*argv, "--results-dir", str(tmp_path / "results")])
    assert_offline(run, tmp_path)
    trial_pids = set(run.imported("hemotune.tuning.trial")) & set(run.processes("default_worker.py"))
    assert trial_pids & set(run.imported("ultralytics")), run.summary()  # Ultralytics trained under the audit
    font = tmp_path / "cache" / "ultralytics" / "Ultralytics" / "Arial.ttf"
    assert font.exists()  # hemotune's local font, in a cache that was empty: no Arial.ttf download
    parent, children = search_tree(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}", "bcd_loss_weights")
    assert parent.info.status == "FINISHED"
    assert [r.info.status for r in children] == ["FINISHED"]
    best_dir = next((tmp_path / "results").glob("bcd_loss_weights-*/best"))
    assert (best_dir / "weights" / "best.pt").exists()
    assert yaml.safe_load((best_dir / "best_config.yaml").read_text())
