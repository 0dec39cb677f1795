"""The content-hash cache: each prepared dataset is built once per machine and reused.

``cache_dir/<kind>/<fingerprint>/`` holds a finished build; a build happens in a
temporary sibling folder under a file lock and is renamed into place, so
concurrent trials (or nodes sharing a file system) never see half a dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

COMPLETE_MARKER = ".complete"


def entry_dir(cache_dir: Path, kind: str, fingerprint: str) -> Path:
    return Path(cache_dir) / kind / fingerprint


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).exists()


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first calling ``build(tmp_dir)`` if no finished build exists.

    ``build`` writes everything into the folder it is given; on success that
    folder becomes ``target``. On failure nothing is left behind.
    """
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_complete(target):
                return target
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            try:
                build(tmp)
                (tmp / COMPLETE_MARKER).write_text("ok\n")
                if target.exists():
                    shutil.rmtree(target)
                tmp.rename(target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock, fcntl.LOCK_UN)
    return target
