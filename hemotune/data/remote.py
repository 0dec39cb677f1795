"""Datasets addressed as ``s3://bucket/prefix``: fetched once per node into the content-hash cache.

A dataset in S3 is listed (key, size, ETag); the listing's hash names the cache
entry ``cache_dir/s3/<hash>/``, so the same bucket contents give the same local
folder on every node, and changed contents give a new one. The fetch:

* runs once per node: under a file lock, and a finished entry (``.complete``) is
  used as it is;
* is parallel (a thread pool, one object per task; boto3 splits large objects);
* is resumable: objects land in a persistent staging folder, and an object
  already there whose checksum verifies is not downloaded again;
* is checksum-verified: against ``hemotune-manifest.json`` (sha256 per file,
  written by ``upload_dataset``) when the prefix has one, otherwise against the
  ETag (the MD5 of a single-part upload; for a multipart upload the MD5 of the
  part MD5s, with the part size read from S3). A corrupted download is detected
  and fetched again, a few times, then the fetch fails loudly.

Endpoints and credentials: boto3's standard chain (instance profile, ``~/.aws``,
``AWS_*`` variables); a custom endpoint (MinIO, on-prem) from
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (``hemotune.storage.s3_endpoint``).
Credentials are never written anywhere by this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hemotune.data.cache import COMPLETE_MARKER
from hemotune.data.fingerprint import file_sha256
from hemotune.errors import DataError
from hemotune.storage import is_s3, s3_endpoint

log = logging.getLogger(__name__)

#: Optional file at the dataset prefix: ``{"files": {"relative/path": "<sha256>"}}``.
MANIFEST_NAME = "hemotune-manifest.json"
#: What a finished cache entry records about its source (a dot file: not part of the data).
SOURCE_RECORD = ".hemotune-s3.json"
#: One line per real fetch (not per cache hit), under ``cache_dir/s3/``.
FETCH_LOG = "fetch-log.jsonl"
_CHUNK = 1 << 20


def s3_client() -> Any:
    """A boto3 S3 client on the standard credential chain and the configured endpoint."""
    try:
        import boto3
    except ImportError:  # pragma: no cover - depends on the install
        raise DataError("s3:// datasets need boto3: pip install 'hemotune[cluster]'") from None
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=s3_endpoint(), config=Config(retries={"max_attempts": 5, "mode": "standard"})
    )


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")``."""
    if not is_s3(uri):
        raise DataError(f"not an s3:// URI: {uri}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise DataError(f"{uri}: no bucket name")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class RemoteObject:
    key: str
    relative: str
    size: int
    etag: str


@dataclass
class FetchReport:
    """What one fetch did (written to the fetch log)."""

    uri: str
    entry: str
    files: int
    bytes: int
    downloaded: int = 0
    reused: int = 0
    refetched: int = 0
    seconds: float = 0.0


def list_objects(client: Any, uri: str) -> tuple[list[RemoteObject], RemoteObject | None]:
    """The dataset's objects under ``uri`` (sorted) and its manifest object, if any."""
    bucket, prefix = split_uri(uri)
    base = f"{prefix}/" if prefix else ""
    objects: list[RemoteObject] = []
    manifest = None
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # a "folder" marker
            relative = key[len(base) :]
            parts = PurePosixPath(relative).parts
            if not parts or any(p in ("", ".", "..") for p in parts):
                raise DataError(f"s3://{bucket}/{key}: unsafe object name inside the dataset prefix")
            obj = RemoteObject(key, relative, int(item["Size"]), str(item["ETag"]).strip('"'))
            if relative == MANIFEST_NAME:
                manifest = obj
            else:
                objects.append(obj)
    if not objects:
        raise DataError(f"{uri}: no objects under this prefix (or no permission to list it)")
    return sorted(objects, key=lambda o: o.relative), manifest


def listing_digest(uri: str, objects: list[RemoteObject], manifest: RemoteObject | None) -> str:
    """The cache key: the same listing (names, sizes, ETags) gives the same entry on every node."""
    digest = hashlib.sha256(uri.rstrip("/").encode())
    for obj in [*objects, *([manifest] if manifest else [])]:
        digest.update(f"\n{obj.relative}\0{obj.size}\0{obj.etag}".encode())
    return digest.hexdigest()


def fetch_dataset(
    uri: str,
    cache_dir: Path,
    *,
    client: Any = None,
    max_workers: int = 8,
    attempts: int = 3,
) -> Path:
    """The local copy of the dataset at ``uri`` in ``cache_dir`` (fetched now if needed)."""
    client = client or s3_client()
    objects, manifest_obj = list_objects(client, uri)
    entry = Path(cache_dir) / "s3" / listing_digest(uri, objects, manifest_obj)[:32]
    if (entry / COMPLETE_MARKER).exists():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _locked(entry.parent / f".{entry.name}.lock"):
        if (entry / COMPLETE_MARKER).exists():
            return entry  # another trial on this node fetched it meanwhile
        started = time.time()
        expected = _expected_sha256(client, uri, manifest_obj)
        staging = entry.parent / f".{entry.name}.partial"
        report = FetchReport(uri, entry.name, len(objects), sum(o.size for o in objects))
        bucket, _ = split_uri(uri)
        verify = _Verifier(client, bucket, expected)

        def fetch_one(obj: RemoteObject) -> str:
            return _fetch_object(client, bucket, obj, staging / obj.relative, verify, attempts)

        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            outcomes = list(pool.map(fetch_one, objects))
        report.downloaded = outcomes.count("downloaded") + outcomes.count("refetched")
        report.reused = outcomes.count("reused")
        report.refetched = outcomes.count("refetched")
        extra = {p for p in staging.rglob("*") if p.is_file()} - {staging / o.relative for o in objects}
        for stale in extra:  # left by an older listing of the same entry: not part of this dataset
            stale.unlink()
        record = {"uri": uri, "objects": [asdict(o) for o in objects], "sha256": expected}
        (staging / SOURCE_RECORD).write_text(json.dumps(record, indent=1))
        (staging / COMPLETE_MARKER).write_text("ok\n")
        if entry.exists():
            shutil.rmtree(entry)
        staging.rename(entry)
        report.seconds = round(time.time() - started, 3)
        with (entry.parent / FETCH_LOG).open("a") as fh:
            fh.write(json.dumps({**asdict(report), "pid": os.getpid(), "time": time.time()}) + "\n")
        log.info(
            "fetched %s: %d files, %d downloaded, %d reused",
            uri,
            report.files,
            report.downloaded,
            report.reused,
        )
    return entry


def localize_dataset(dataset: Mapping[str, Any], cache_dir: Path) -> dict[str, Any]:
    """``dataset`` with an ``s3://`` path replaced by its local copy (other paths unchanged)."""
    local = dict(dataset)
    if is_s3(local.get("path")):
        local["path"] = str(fetch_dataset(str(local["path"]), cache_dir))
    return local


def upload_dataset(local_dir: Path, uri: str, *, client: Any = None) -> int:
    """Upload a local dataset folder to ``uri`` with a sha256 manifest; returns the file count."""

    client = client or s3_client()
    bucket, prefix = split_uri(uri)
    root = Path(local_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    manifest = {"files": {p.relative_to(root).as_posix(): file_sha256(p) for p in files}}
    for path in files:
        key = "/".join(filter(None, [prefix, path.relative_to(root).as_posix()]))
        client.upload_file(str(path), bucket, key)
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    client.put_object(Bucket=bucket, Key="/".join(filter(None, [prefix, MANIFEST_NAME])), Body=body)
    return len(files)


# ----------------------------------------------------------------------------- internals


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock, fcntl.LOCK_UN)


def _expected_sha256(client: Any, uri: str, manifest: RemoteObject | None) -> dict[str, str]:
    if manifest is None:
        return {}
    bucket, _ = split_uri(uri)
    body = client.get_object(Bucket=bucket, Key=manifest.key)["Body"].read()
    try:
        files = json.loads(body)["files"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"s3://{bucket}/{manifest.key}: not a hemotune manifest") from None
    return {str(k): str(v) for k, v in files.items()}


class _Verifier:
    """Checks a local file against the manifest's sha256, else the object's ETag."""

    def __init__(self, client: Any, bucket: str, sha256: Mapping[str, str]) -> None:
        self.client = client
        self.bucket = bucket
        self.sha256 = sha256

    def __call__(self, obj: RemoteObject, path: Path) -> bool:
        if not path.is_file() or path.stat().st_size != obj.size:
            return False
        if obj.relative in self.sha256:
            return file_sha256(path) == self.sha256[obj.relative]
        return self._etag_matches(obj, path)

    def _etag_matches(self, obj: RemoteObject, path: Path) -> bool:
        etag = obj.etag
        if "-" not in etag:
            return _digest(path, hashlib.md5, None)[0] == etag
        parts = int(etag.rsplit("-", 1)[1])
        head = self.client.head_object(Bucket=self.bucket, Key=obj.key, PartNumber=1)
        part_size = int(head["ContentLength"])
        _, part_digests = _digest(path, hashlib.md5, part_size)
        if len(part_digests) != parts:
            return False
        combined = hashlib.md5(b"".join(part_digests)).hexdigest()
        return f"{combined}-{parts}" == etag


def _digest(path: Path, algorithm: Callable[[], Any], part_size: int | None) -> tuple[str, list[bytes]]:
    """Hex digest of the whole file, and (with ``part_size``) the raw digest of each part."""
    whole = algorithm()
    parts: list[bytes] = []
    part = algorithm()
    in_part = 0
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK if part_size is None else min(_CHUNK, part_size - in_part)):
            whole.update(block)
            if part_size is not None:
                part.update(block)
                in_part += len(block)
                if in_part == part_size:
                    parts.append(part.digest())
                    part, in_part = algorithm(), 0
    if part_size is not None and in_part:
        parts.append(part.digest())
    return whole.hexdigest(), parts


def _fetch_object(
    client: Any,
    bucket: str,
    obj: RemoteObject,
    target: Path,
    verify: Callable[[RemoteObject, Path], bool],
    attempts: int,
) -> str:
    """Make ``target`` a verified copy of ``obj``: 'reused', 'downloaded' or 'refetched'."""
    if verify(obj, target):
        return "reused"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".download")
    for attempt in range(1, attempts + 1):
        client.download_file(bucket, obj.key, str(partial))
        if verify(obj, partial):
            os.replace(partial, target)
            return "downloaded" if attempt == 1 else "refetched"
        log.warning(
            "s3://%s/%s: checksum mismatch after download (attempt %d/%d)", bucket, obj.key, attempt, attempts
        )
        partial.unlink(missing_ok=True)
    raise DataError(
        f"s3://{bucket}/{obj.key}: the download does not match its checksum after {attempts} attempts"
    )
