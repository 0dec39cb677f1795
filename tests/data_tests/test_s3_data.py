"""S3 against a real endpoint (moto_server on loopback): dataset fetch, Tune storage paths, credentials.

The dataset fetch is checked for what the cluster relies on: one fetch per cache
(a second call downloads nothing), parallel downloads, resuming an interrupted
fetch without downloading verified files again, and corrupted downloads caught by
their checksum (manifest sha256, single-part ETag, multipart ETag) and fetched again.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_stack import S3Server

from hemotune import storage
from hemotune.data import remote
from hemotune.errors import DataError

BUCKET = "hemotune-unit"
FILES = {f"images/img_{i:02d}.jpg": bytes([i]) * (1000 + i) for i in range(12)} | {
    "labels.csv": b"a,b\n1,2\n"
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "unit-key", "AWS_SECRET_ACCESS_KEY": "unit-secret"}
    server = S3Server(tmp_path_factory.mktemp("moto"), env)
    try:
        yield server
    finally:
        server.service.kill()


@pytest.fixture
def aws(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client of the test endpoint, configured the standard way (environment)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unit-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = remote.s3_client()
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return client


def _upload(client: Any, prefix: str, files: dict[str, bytes], tmp: Path, *, manifest: bool = True) -> str:
    local = tmp / prefix.replace("/", "_")
    for name, data in files.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    uri = f"s3://{BUCKET}/{prefix}"
    if manifest:
        assert remote.upload_dataset(local, uri, client=client) == len(files)
    else:
        for name in files:
            client.upload_file(str(local / name), BUCKET, f"{prefix}/{name}")
    return uri


def _fetches(cache: Path) -> list[dict[str, Any]]:
    log = cache / "s3" / remote.FETCH_LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


class CountingClient:
    """The real client, with downloads counted (and optionally broken)."""

    def __init__(
        self, client: Any, fail_after: int | None = None, corrupt: dict[str, int] | None = None
    ) -> None:
        self.client = client
        self.downloads: list[str] = []
        self.fail_after = fail_after
        self.corrupt = dict(corrupt or {})  # key -> how many downloads of it come back corrupted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        if self.fail_after is not None and len(self.downloads) >= self.fail_after:
            raise ConnectionError("network lost")
        self.downloads.append(key)
        self.client.download_file(bucket, key, filename)
        if self.corrupt.get(key, 0) > 0:
            self.corrupt[key] -= 1
            data = bytearray(Path(filename).read_bytes())
            data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
            Path(filename).write_bytes(bytes(data))


def test_dataset_is_fetched_once_in_parallel_and_matches_the_bucket(aws: Any, tmp_path: Path) -> None:
    uri = _upload(aws, "ds/once", FILES, tmp_path)
    cache = tmp_path / "cache"
    counting = CountingClient(aws)
    local = remote.fetch_dataset(uri, cache, client=counting, max_workers=4)
    assert {
        p.relative_to(local).as_posix(): p.read_bytes()
        for p in local.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    } == FILES
    assert sorted(counting.downloads) == sorted(f"ds/once/{n}" for n in FILES)  # not the manifest
    assert remote.fetch_dataset(uri, cache, client=counting) == local  # a cache hit: nothing downloaded
    assert len(counting.downloads) == len(FILES)
    fetches = _fetches(cache)
    assert len(fetches) == 1 and fetches[0]["downloaded"] == len(FILES) and fetches[0]["reused"] == 0
    # The dataset as a search space names it: the s3:// path becomes the local copy.
    assert remote.localize_dataset({"path": uri, "format": "voc"}, cache) == {
        "path": str(local),
        "format": "voc",
    }


def test_changed_bucket_contents_make_a_new_cache_entry(aws: Any, tmp_path: Path) -> None:
    uri = _upload(aws, "ds/changing", {"a.txt": b"one"}, tmp_path)
    first = remote.fetch_dataset(uri, tmp_path / "cache", client=aws)
    _upload(aws, "ds/changing", {"a.txt": b"two"}, tmp_path)
    second = remote.fetch_dataset(uri, tmp_path / "cache", client=aws)
    assert first != second and (second / "a.txt").read_bytes() == b"two"


def test_an_interrupted_fetch_resumes_without_downloading_verified_files_again(
    aws: Any, tmp_path: Path
) -> None:
    uri = _upload(aws, "ds/resume", FILES, tmp_path)
    cache = tmp_path / "cache"
    broken = CountingClient(aws, fail_after=5)
    with pytest.raises(ConnectionError):
        remote.fetch_dataset(uri, cache, client=broken, max_workers=1)
    assert len(broken.downloads) == 5
    resumed = CountingClient(aws)
    local = remote.fetch_dataset(uri, cache, client=resumed, max_workers=1)
    assert len(resumed.downloads) == len(FILES) - 5
    assert not set(resumed.downloads) & set(broken.downloads)
    fetch = _fetches(cache)[-1]
    assert (fetch["downloaded"], fetch["reused"]) == (len(FILES) - 5, 5)
    assert (local / "labels.csv").read_bytes() == FILES["labels.csv"]


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest-sha256", "etag-md5"])
def test_a_corrupted_download_is_detected_and_fetched_again(aws: Any, tmp_path: Path, manifest: bool) -> None:
    uri = _upload(aws, f"ds/corrupt-{manifest}", FILES, tmp_path, manifest=manifest)
    key = f"ds/corrupt-{manifest}/images/img_03.jpg"
    flaky = CountingClient(aws, corrupt={key: 1})
    local = remote.fetch_dataset(uri, tmp_path / "cache", client=flaky)
    assert flaky.downloads.count(key) == 2
    assert (local / "images/img_03.jpg").read_bytes() == FILES["images/img_03.jpg"]
    assert _fetches(tmp_path / "cache")[-1]["refetched"] == 1


def test_a_download_that_never_verifies_fails_loudly(aws: Any, tmp_path: Path) -> None:
    uri = _upload(aws, "ds/bad", {"x.bin": b"x" * 100}, tmp_path)
    hopeless = CountingClient(aws, corrupt={"ds/bad/x.bin": 99})
    with pytest.raises(DataError, match="does not match its checksum"):
        remote.fetch_dataset(uri, tmp_path / "cache", client=hopeless, attempts=3)
    assert hopeless.downloads.count("ds/bad/x.bin") == 3
    assert not list((tmp_path / "cache" / "s3").glob("*/.complete")), "a failed fetch must not look finished"


def test_multipart_etags_are_verified_with_the_part_size_read_from_s3(aws: Any, tmp_path: Path) -> None:
    from boto3.s3.transfer import TransferConfig

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024 + 123))
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    aws.upload_file(str(big), BUCKET, "ds/multipart/big.bin", Config=config)
    etag = aws.head_object(Bucket=BUCKET, Key="ds/multipart/big.bin")["ETag"]
    assert etag.strip('"').endswith("-2"), etag
    flaky = CountingClient(aws, corrupt={"ds/multipart/big.bin": 1})
    local = remote.fetch_dataset(f"s3://{BUCKET}/ds/multipart", tmp_path / "cache", client=flaky)
    assert flaky.downloads.count("ds/multipart/big.bin") == 2
    assert (local / "big.bin").read_bytes() == big.read_bytes()


def test_unsafe_object_names_and_empty_prefixes_are_refused(aws: Any, tmp_path: Path) -> None:
    aws.put_object(Bucket=BUCKET, Key="ds/unsafe/../escape.txt", Body=b"x")
    with pytest.raises(DataError, match="unsafe object name"):
        remote.fetch_dataset(f"s3://{BUCKET}/ds/unsafe", tmp_path / "cache", client=aws)
    with pytest.raises(DataError, match="no objects"):
        remote.fetch_dataset(f"s3://{BUCKET}/ds/nothing-here", tmp_path / "cache", client=aws)


def test_tune_storage_on_s3_uses_an_explicit_filesystem_for_the_custom_endpoint(
    aws: Any, s3: S3Server
) -> None:
    import pickle

    import pyarrow.fs as pafs

    path, fs = storage.tune_storage(f"s3://{BUCKET}/tune/")
    assert path == f"{BUCKET}/tune" and isinstance(fs, pafs.S3FileSystem)
    assert storage.tune_storage("relative/dir")[1] is None
    # Tune pickles the file system into tuner.pkl and ships it to every node: endpoint yes, keys no.
    state = pickle.dumps(fs)
    assert s3.endpoint.split("//")[1].encode() in state
    assert b"unit-secret" not in state and b"unit-key" not in state


def test_state_files_and_resumable_searches_are_found_on_s3(aws: Any) -> None:
    from hemotune.tuning import STATE_FILE, find_resumable

    root = f"s3://{BUCKET}/results"
    for name in ("bcd-20260101-000000", "bcd-20260102-000000", "other-20260103-000000"):
        storage.write_json(storage.join(root, name, STATE_FILE), {"name": name})
    storage.write_text(storage.join(root, "bcd-20260104-000000", "no-state.txt"), "x")
    assert storage.list_dirs(root) == sorted(
        ["bcd-20260101-000000", "bcd-20260102-000000", "bcd-20260104-000000", "other-20260103-000000"]
    )
    assert find_resumable(root, "bcd") == f"{root}/bcd-20260102-000000"  # the newest with a state file
    assert storage.read_json(storage.join(root, "bcd-20260102-000000", STATE_FILE)) == {
        "name": "bcd-20260102-000000"
    }


def test_static_credentials_leave_the_environment_but_stay_usable(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "unit-token")
    aws.put_object(Bucket=BUCKET, Key="credentials-probe/object.txt", Body=b"probe")  # this test's own object
    with storage.aws_credentials_out_of_environment():
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(os.environ)
        path = Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"])
        assert (
            stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        )
        assert BUCKET in [
            b["Name"] for b in remote.s3_client().list_buckets()["Buckets"]
        ]  # boto3 via the file
        fs, fs_path = storage.filesystem(f"s3://{BUCKET}/credentials-probe")
        assert fs.get_file_info(fs_path).type.name == "Directory"  # pyarrow via the file
        with fs.open_input_stream(f"{fs_path}/object.txt") as stream:
            assert stream.read() == b"probe"
    assert (
        os.environ["AWS_SECRET_ACCESS_KEY"] == "unit-secret"
        and os.environ["AWS_SESSION_TOKEN"] == "unit-token"
    )
    assert "AWS_SHARED_CREDENTIALS_FILE" not in os.environ and not path.exists()
