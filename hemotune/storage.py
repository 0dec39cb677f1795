"""Small file I/O over local paths and URIs (``s3://...``) through pyarrow's file systems.

Ray Tune keeps its experiments under ``storage_path`` with pyarrow file systems;
hemotune keeps its own state file beside them the same way, so a search stored
on S3 can be resumed from any machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hemotune.errors import UsageError


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def normalize_storage(path: str) -> str:
    """An absolute local path or a URI: Ray refuses relative storage paths."""
    if path.startswith("file://"):
        path = path[len("file://") :]
    if is_uri(path):
        return path.rstrip("/")
    return str(Path(path).expanduser().resolve())


def filesystem(uri: str) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path within it)`` for a local path or URI.

    For S3, a custom endpoint (MinIO, on-prem, a test server) comes from
    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; credentials from the
    standard AWS chain.
    """
    import pyarrow.fs as pafs

    if not is_uri(uri):
        return pafs.LocalFileSystem(), normalize_storage(uri)
    if uri.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict[str, Any] = {}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), uri[len("s3://") :]
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pragma: no cover - depends on pyarrow build
        raise UsageError(f"unsupported storage URI {uri}: {exc}") from None


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def write_text(uri: str, text: str) -> None:
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(uri: str) -> str | None:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as src:
        return bytes(src.read()).decode()


def write_json(uri: str, data: Any) -> None:
    write_text(uri, json.dumps(data, indent=2, default=str))


def read_json(uri: str) -> Any:
    text = read_text(uri)
    return None if text is None else json.loads(text)


def list_dirs(uri: str) -> list[str]:
    """Names of the folders directly under ``uri`` (empty if it does not exist)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.Directory:
        return []
    selector = pafs.FileSelector(path, recursive=False)
    return sorted(i.base_name for i in fs.get_file_info(selector) if i.type == pafs.FileType.Directory)
