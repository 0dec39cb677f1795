"""The process running a search (its driver), recorded in ``hemotune_search.json`` while it runs.

A driver killed with SIGKILL closes nothing: its state file still says ``running``
and its MLflow runs stay RUNNING. ``hemotune sync`` closes them, but only once it
knows the driver is gone, and ``--resume`` must not start a second driver beside a
live one. So a driver records its host and pid, and on Linux the kernel's boot id
and the start tick of its process (``/proc/<pid>/stat``), so that a reused pid is not
taken for the driver. From another host nothing can be checked. No Ray here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hemotune.errors import UsageError

ALIVE, GONE, UNKNOWN = "alive", "gone", "unknown"


def driver_record() -> dict[str, Any]:
    """Who this process is: host, pid and (Linux) boot id and process start tick."""
    pid = os.getpid()
    record: dict[str, Any] = {"host": socket.gethostname(), "pid": pid}
    identity = _identity(pid)
    if identity is not None:
        record["boot_id"], record["start_ticks"], _ = identity
    return record


def driver_status(record: Any) -> str:
    """``alive``, ``gone`` or ``unknown`` (no record, or a driver on another host)."""
    if not isinstance(record, Mapping) or not isinstance(record.get("pid"), int):
        return UNKNOWN
    if record.get("host") != socket.gethostname():
        return UNKNOWN
    pid = int(record["pid"])
    if not _pid_exists(pid):
        return GONE
    identity = _identity(pid)
    if identity is None:
        return ALIVE if "start_ticks" not in record else GONE
    boot_id, start_ticks, state = identity
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return GONE
    if "start_ticks" in record and (record.get("boot_id"), record["start_ticks"]) != (boot_id, start_ticks):
        return GONE  # the pid now belongs to another process (or the machine rebooted)
    return ALIVE


def describe(record: Any) -> str:
    """``pid 123 on host`` (or ``no driver recorded``)."""
    if not isinstance(record, Mapping):
        return "no driver recorded"
    return f"pid {record.get('pid')} on {record.get('host')}"


def refuse_resume_beside_live_driver(state: Mapping[str, Any], experiment_path: str) -> None:
    """``--resume`` of a search whose driver is still alive here would run it twice: UsageError."""
    record = state.get("driver")
    if state.get("status") == "running" and driver_status(record) == ALIVE:
        raise UsageError(
            f"{experiment_path} is still running: its driver ({describe(record)}) is alive; "
            "let it finish or stop it (Ctrl-C) before --resume"
        )


def refuse_sync_unless_driver_gone(state: Mapping[str, Any], experiment_path: str) -> None:
    """``hemotune sync`` closes the runs of a search marked running only once its driver is gone."""
    record = state.get("driver")
    status = driver_status(record)
    if status == ALIVE:
        raise UsageError(
            f"{experiment_path} is still running: its driver ({describe(record)}) is alive, and sync "
            "would close the MLflow runs it is writing; let it finish, stop it (Ctrl-C), or pass --force"
        )
    if status == UNKNOWN:
        raise UsageError(
            f"{experiment_path} is marked running and its driver ({describe(record)}) cannot be checked "
            f"from {socket.gethostname()}; run sync on the driver's host, or pass --force if it is gone"
        )


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _identity(pid: int) -> tuple[str, int, str] | None:
    """``(boot id, start tick, state letter)`` of process ``pid`` from ``/proc`` (``None`` elsewhere)."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (command)": state is field 3, starttime 22
    return boot_id, int(fields[19]), fields[0]
