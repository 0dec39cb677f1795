"""Content fingerprints: the same bytes give the same hash on every machine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_files(root: Path, files: Iterable[Path], extra: Mapping[str, Any] | None = None) -> str:
    """sha256 over (relative path, content hash) of ``files`` under ``root``, plus ``extra`` options."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(file_sha256(path).encode())
        digest.update(b"\n")
    if extra:
        digest.update(json.dumps(dict(extra), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def fingerprint_tree(root: Path, extra: Mapping[str, Any] | None = None) -> str:
    """Fingerprint of every regular file under ``root`` (or of ``root`` itself if it is a file)."""
    root = Path(root)
    if root.is_file():
        return fingerprint_files(root.parent, [root], extra)
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return fingerprint_files(root, files, extra)
