"""Small file I/O over local paths and URIs (``s3://...``) through pyarrow's file systems.

Ray Tune keeps its experiments under ``storage_path`` with pyarrow file systems;
hemotune keeps its own state file beside them the same way, so a search stored
on S3 can be resumed from any machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hemotune.errors import UsageError
from hemotune.offline import temporary_env

#: Static AWS credentials as environment variables: Ray Tune copies exactly these from the
#: driver into every trial's ``runtime_env``, which each node's runtime-env agent logs.
AWS_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)


def is_uri(path: str) -> bool:
    """A URI Ray Tune and pyarrow treat as remote storage (``s3://``, ``gs://``; not ``file://``)."""
    return "://" in path and not path.startswith("file://")


def is_s3(path: Any) -> bool:
    """An ``s3://bucket/prefix`` address (a dataset or results folder on S3)."""
    return isinstance(path, str) and path.startswith("s3://")


def s3_endpoint() -> str | None:
    """The custom S3 endpoint, if one is configured (``AWS_ENDPOINT_URL_S3`` wins)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


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
    if is_s3(uri):
        endpoint = s3_endpoint()
        kwargs: dict[str, Any] = {}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kwargs["region"] = region
        if not kwargs:  # plain AWS, region unknown: from_uri looks up the bucket's region
            fs, path = pafs.FileSystem.from_uri(uri)
            return fs, path
        return pafs.S3FileSystem(**kwargs), uri[len("s3://") :].rstrip("/")
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pragma: no cover - depends on pyarrow build
        raise UsageError(f"unsupported storage URI {uri}: {exc}") from None


def tune_storage(path: str) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray Tune.

    A URI becomes the path inside an explicit pyarrow file system, so a custom S3
    endpoint travels (pickled, without credentials) to every node with the
    storage context instead of depending on each node's environment. Local
    paths are passed through with no file system.
    """
    if not is_uri(path):
        return normalize_storage(path), None
    fs, fs_path = filesystem(path)
    return fs_path, fs


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def write_text(uri: str, text: str) -> None:
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(uri: str) -> str | None:
    """The text of the file at ``uri``; ``None`` when there is no such file."""
    return read_fs_text(*filesystem(uri))


def read_fs_text(fs: Any, path: str) -> str | None:
    """The text of file ``path`` within pyarrow file system ``fs`` (reuse one ``fs`` for many files)."""
    import pyarrow.fs as pafs

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


@contextlib.contextmanager
def aws_credentials_out_of_environment() -> Iterator[None]:
    """Keep static AWS credentials in this process's reach but out of its environment.

    Ray Tune (2.60, ``tune/execution/class_cache.py``) copies ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN`` from the driver's
    environment into the ``runtime_env`` of every trial actor; every node's
    runtime-env agent then writes them to its log, and the GCS keeps them. For
    the duration of the block they live instead in a private shared-credentials
    file (a 0700 folder, a 0600 file, deleted afterwards) that the standard AWS
    chain (boto3, pyarrow) finds through ``AWS_SHARED_CREDENTIALS_FILE``. Trials on
    other nodes use those nodes' own credentials (an instance profile); a local
    Ray started inside the block inherits the file's path, not the secrets.
    Create S3 clients and file systems inside the block.
    """
    found = {name: os.environ[name] for name in AWS_CREDENTIAL_VARS if os.environ.get(name)}
    if not found.get("AWS_ACCESS_KEY_ID") or not found.get("AWS_SECRET_ACCESS_KEY"):
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="hemotune-aws-"))  # mode 0700
    path = folder / "credentials"
    lines = [
        f"[{os.environ.get('AWS_PROFILE') or 'default'}]",
        f"aws_access_key_id = {found['AWS_ACCESS_KEY_ID']}",
        f"aws_secret_access_key = {found['AWS_SECRET_ACCESS_KEY']}",
    ]
    token = found.get("AWS_SESSION_TOKEN") or found.get("AWS_SECURITY_TOKEN")
    if token:
        lines.append(f"aws_session_token = {token}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    unset: dict[str, str | None] = dict.fromkeys(AWS_CREDENTIAL_VARS)
    try:
        with temporary_env({**unset, "AWS_SHARED_CREDENTIALS_FILE": str(path)}):
            yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)
