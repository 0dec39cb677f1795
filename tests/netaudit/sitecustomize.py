"""Network audit for tests/test_offline.py: with this folder on PYTHONPATH, every Python process records its network use.

Python imports ``sitecustomize`` at start-up, so each Python process a search starts (the
driver, Ray's workers, agents and dashboard, the trial processes) installs the audit hook
below before any other code runs, and so does every Python process those start in turn
(they inherit PYTHONPATH). It appends JSON lines to ``$HEMOTUNE_NETAUDIT_DIR/<pid>.jsonl``:

- ``start``: parent pid, argv, and the watched environment variables
  (``$HEMOTUNE_NETAUDIT_WATCH``, comma-separated) as the process found them;
- ``import``: the first import of a module named in ``WATCHED_IMPORTS`` (which processes
  ran a trial, Ultralytics, MLflow), with the watched variables at that moment;
- ``spawn``: every program the process starts (``subprocess.Popen``, ``os.exec*``,
  ``os.posix_spawn``) with the watched variables of the environment it hands over;
- ``connect`` (``socket.connect``/``connect_ex``, ``sendto``, ``sendmsg``) and ``lookup``
  (``getaddrinfo``, ``gethostbyname``, ``gethostbyaddr``) with the target and whether it
  stays on this machine.

A connect or send to an address that is not loopback (127.0.0.0/8, ::1; unix and netlink
sockets are local), or a name lookup that would need DNS (not a numeric address, not a
loopback name of /etc/hosts), is recorded first and then refused with ``PermissionError``
before the system call is made: no packet can leave from Python code, even outside a
network namespace. Neither hemotune nor the pytest process imports this module.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_DIR = os.environ.get("HEMOTUNE_NETAUDIT_DIR", "")
_WATCH = [name for name in os.environ.get("HEMOTUNE_NETAUDIT_WATCH", "").split(",") if name]
WATCHED_IMPORTS = {"hemotune.tuning.trial", "ultralytics", "mlflow", "torch", "urllib.request"}
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_guard = threading.local()


def _is_loopback_ip(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _hosts_file_names() -> set[str]:
    """Names /etc/hosts maps to loopback addresses: looking them up needs no DNS."""
    names: set[str] = set()
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return names
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and _is_loopback_ip(fields[0]):
            names.update(name.lower() for name in fields[1:])
    return names


_LOOKUP_NAMES = _LOCAL_NAMES | _hosts_file_names()


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _local_target(family: object, address: object) -> bool:
    """A connect/send target on this machine only: loopback, a unix socket, the kernel (netlink)."""
    if family in (getattr(socket, "AF_UNIX", None), getattr(socket, "AF_NETLINK", None)):
        return True
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        host = _text(address[0])
        return _is_loopback_ip(host) or host.lower() in _LOCAL_NAMES
    return False


def _local_lookup(host: object) -> bool:
    """A lookup answered without DNS: no host, a numeric address, or a loopback name of /etc/hosts."""
    if host is None:
        return True
    name = _text(host)
    return _is_ip(name) or name.lower() in _LOOKUP_NAMES


def _watched(env: Mapping[Any, Any] | None) -> dict[str, str | None]:
    """The watched variables of ``env`` (this process's environment when None)."""
    if env is None:
        env = os.environ
    plain = {_text(k): _text(v) for k, v in env.items()}
    return {name: plain.get(name) for name in _WATCH}


def _write(record: dict[str, Any]) -> None:
    record["pid"] = os.getpid()
    line = (json.dumps(record, default=repr) + "\n").encode()
    fd = os.open(os.path.join(_DIR, f"{os.getpid()}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _record(event: str, args: tuple[Any, ...]) -> tuple[dict[str, Any] | None, bool]:
    """``(record, refuse)`` for one audit event (``None``: not a network or process event)."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[1]
        if address is None:
            return None, False  # a send on a connected socket: its connect was recorded
        family = getattr(sock, "family", None)
        local = _local_target(family, address)
        return {
            "event": "connect",
            "call": event,
            "family": str(family),
            "address": address,
            "local": local,
        }, not local
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        local = _local_lookup(args[0])
        return {"event": "lookup", "call": event, "host": args[0], "local": local}, not local
    if event == "socket.gethostbyaddr":
        local = _is_loopback_ip(_text(args[0]))
        return {"event": "lookup", "call": event, "host": args[0], "local": local}, not local
    if event == "subprocess.Popen":
        program, argv, env = args[0], args[1], args[3]
        argv = [argv] if isinstance(argv, (str, bytes)) else list(argv or [])
        return {
            "event": "spawn",
            "call": event,
            "program": program,
            "argv": argv,
            "env": _watched(env),
        }, False
    if event in ("os.exec", "os.posix_spawn"):
        program, argv, env = args[0], args[1], args[2]
        return {
            "event": "spawn",
            "call": event,
            "program": program,
            "argv": list(argv or []),
            "env": _watched(env),
        }, False
    if event == "import" and args[0] in WATCHED_IMPORTS:
        return {"event": "import", "module": args[0], "env": _watched(None)}, False
    return None, False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if getattr(_guard, "busy", False):
        return
    _guard.busy = True
    try:
        record, refuse = _record(event, args)
        if record is not None:
            _write(record)
    finally:
        _guard.busy = False
    if refuse:
        target = record.get("address", record.get("host")) if record else None
        raise PermissionError(f"hemotune network audit: refused {event} to {target!r}")


if _DIR:
    _guard.busy = True
    try:
        _write({"event": "start", "ppid": os.getppid(), "argv": sys.argv, "env": _watched(None)})
    finally:
        _guard.busy = False
    sys.addaudithook(_hook)
