"""S3 uploads go straight to the blob's final key in one pass, and are still atomic: a wrong
digest, a short or a long body leaves no object and no pending multipart upload (moto server)."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from minio import Minio

import storage
from registry.services.context import Registry
from storage.s3 import MAX_PARTS, MULTIPART_STALE_S, SMALL_PART_SIZE, S3BlobStore, part_size_for
from tests.conftest import ServerThread, make_settings

pytestmark = pytest.mark.server

MIB = 1024 * 1024
PART = 5 * MIB
"""S3's smallest part: a 12 MiB blob goes in three parts, the last one refused."""


@pytest.fixture
def s3(s3_endpoint: str, s3_bucket: str) -> S3BlobStore:
    client = Minio(s3_endpoint, access_key="test", secret_key="test", secure=False, region="us-east-1")
    return S3BlobStore(client, s3_bucket, "adapters", part_size=PART)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def objects(store: S3BlobStore) -> list[str]:
    return [o.object_name or "" for o in store.client.list_objects(store.bucket, recursive=True)]


def pending_uploads(store: S3BlobStore) -> list[str]:
    """Incomplete multipart uploads in the bucket (the SDK lists them only privately)."""
    listing = store.client._list_multipart_uploads(store.bucket)
    return [u.object_name or "" for u in listing.uploads]


def test_a_multipart_upload_lands_at_its_final_key(s3: S3BlobStore) -> None:
    data = os.urandom(12 * MIB + 3)
    d = digest_of(data)
    moved: list[int] = []
    assert s3.put(io.BytesIO(data), d, len(data), moved.append) == storage.BlobInfo(d, len(data))
    assert objects(s3) == [s3.key_for(d)]  # no temporary key, no copy
    assert b"".join(s3.open(d)) == data
    assert sum(moved) == len(data)
    assert pending_uploads(s3) == []


@pytest.mark.parametrize("size_mib", [12, 1], ids=["multipart", "single-part"])
@pytest.mark.parametrize("lie", ["digest", "truncated", "too-long"])
def test_a_refused_upload_leaves_no_object_and_no_parts(s3: S3BlobStore, lie: str, size_mib: int) -> None:
    data = os.urandom(size_mib * MIB + 5)
    d, size, body = digest_of(data), len(data), data
    expected: type[Exception] = storage.SizeMismatch
    if lie == "digest":
        d = digest_of(data[:-1] + bytes([data[-1] ^ 1]))  # differs only in the very last byte
        expected = storage.DigestMismatch
    elif lie == "truncated":
        body = data[: size - 7]  # the body ends early (a client that died)
    else:
        body = data + b"extra"
    with pytest.raises(expected):
        s3.put(io.BytesIO(body), d, size)
    assert s3.stat(d) is None
    assert objects(s3) == []
    assert pending_uploads(s3) == []


def test_an_empty_blob_is_verified_before_it_is_sent(s3: S3BlobStore) -> None:
    with pytest.raises(storage.DigestMismatch):
        s3.put(io.BytesIO(b""), digest_of(b"x"), 0)
    with pytest.raises(storage.SizeMismatch):
        s3.put(io.BytesIO(b"x"), digest_of(b""), 0)
    assert objects(s3) == []
    s3.put(io.BytesIO(b""), digest_of(b""), 0)
    assert s3.stat(digest_of(b"")) == storage.BlobInfo(digest_of(b""), 0)


def test_stale_multipart_uploads_are_aborted(s3: S3BlobStore) -> None:
    """A process killed mid-upload leaves an incomplete upload: the stale-upload sweep aborts it."""
    key = s3.key_for(digest_of(b"killed"))
    s3.client._create_multipart_upload(s3.bucket, key, {})
    assert pending_uploads(s3) == [key]
    # (moto reports every upload as begun in 2010, so that young ones are kept is not seen here)
    assert s3.remove_stale_uploads(0) == 1
    assert pending_uploads(s3) == []


class FailsInPart2:
    """A body that raises `error` once 7 MiB (the second 5 MiB part) have been read."""

    def __init__(self, data: bytes, error: BaseException) -> None:
        self._raw = io.BytesIO(data)
        self._error = error

    def read(self, n: int = -1) -> bytes:
        if self._raw.tell() >= 7 * MIB:
            raise self._error
        return self._raw.read(n if n >= 0 else 7 * MIB)


@pytest.mark.parametrize("error", [OSError("disk gone"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_body_failing_in_part_2_leaves_no_pending_upload(s3: S3BlobStore, error: BaseException) -> None:
    """The SDK aborts its upload on an Exception only; a KeyboardInterrupt is aborted by the store."""
    data = os.urandom(12 * MIB)
    d = digest_of(data)
    with pytest.raises(type(error)):
        s3.put(FailsInPart2(data, error), d, len(data))
    assert objects(s3) == []
    assert pending_uploads(s3) == []
    s3.put(io.BytesIO(data), d, len(data))  # and the same blob uploads afterwards
    assert b"".join(s3.open(d)) == data


def test_an_interrupted_upload_leaves_other_keys_pending_uploads_alone(s3: S3BlobStore) -> None:
    other = s3.key_for(digest_of(b"other"))
    s3.client._create_multipart_upload(s3.bucket, other, {})
    data = os.urandom(12 * MIB)
    with pytest.raises(KeyboardInterrupt):
        s3.put(FailsInPart2(data, KeyboardInterrupt()), digest_of(data), len(data))
    assert pending_uploads(s3) == [other]


def test_huge_blobs_get_parts_big_enough_for_the_part_limit() -> None:
    assert part_size_for(12 * MIB, PART) == PART
    assert part_size_for(MAX_PARTS * PART, PART) == PART
    huge = MAX_PARTS * PART + 1
    assert part_size_for(huge, PART) > PART
    assert -(-huge // part_size_for(huge, PART)) <= MAX_PARTS  # parts needed, rounded up
    assert part_size_for(1024**4, 32 * MIB) * MAX_PARTS >= 1024**4


class ListingOnly:
    """A stand-in for the minio client that lists given multipart uploads and records aborts
    (moto dates every upload 2010, so the sweep's choice by age cannot be seen on it)."""

    def __init__(self, ages_h: list[float]) -> None:
        now = datetime.now(UTC)
        self.uploads = [
            SimpleNamespace(
                object_name=f"p/sha256/ab/{i}", upload_id=f"u{i}", initiated_time=now - timedelta(hours=h)
            )
            for i, h in enumerate(ages_h)
        ]
        self.aborted: list[str] = []

    def _list_multipart_uploads(self, bucket: str, **kwargs: Any) -> SimpleNamespace:
        return SimpleNamespace(uploads=self.uploads, is_truncated=False)

    def _abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.aborted.append(upload_id)

    def list_objects(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("older_than_h", "aborted"),
    [(0, ["u3"]), (1, ["u3"]), (30, [])],
    ids=["now", "default-1h", "longer-than-a-day"],
)
def test_the_stale_sweep_keeps_multipart_uploads_for_a_day(older_than_h: float, aborted: list[str]) -> None:
    """A restarting replica sweeps with stale_upload_s (1 h): a long upload another replica is
    still sending (here 2 h and 23 h old) must survive it; only uploads over a day old are aborted."""
    assert MULTIPART_STALE_S == 24 * 3600
    client = ListingOnly([0.1, 2, 23, 25])
    store = S3BlobStore(client, "b", "p")  # type: ignore[arg-type]
    assert store.remove_stale_uploads(older_than_h * 3600) == len(aborted)
    assert client.aborted == aborted


@pytest.mark.s3
def test_the_server_streams_a_put_to_the_final_key(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """PUT /v1/blobs/{digest} over real HTTP into an S3 store: the same one-pass upload, refused
    without a trace when the body does not hash to the digest."""
    from registry.api import create_app

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}", "s3", request)
    reg = Registry.from_settings(settings, migrate=True)
    store = reg.store
    assert isinstance(store, S3BlobStore)
    data = os.urandom(3 * MIB + 11)
    d = digest_of(data)
    try:
        with ServerThread(create_app(settings, reg, worker=False)) as srv:
            bad = data[:-1] + b"\0"
            resp = httpx.put(f"{srv.url}/v1/blobs/{d}", content=bad, headers=srv.auth, timeout=60)
            assert resp.status_code == 422, resp.text
            assert resp.json()["code"] == "digest_mismatch"
            assert store.stat(d) is None
            assert pending_uploads(store) == []
            resp = httpx.put(f"{srv.url}/v1/blobs/{d}", content=data, headers=srv.auth, timeout=60)
            assert resp.status_code == 201, resp.text
    finally:
        reg.close()
    assert [k for k in objects(store) if "/tmp/" in k] == []
    assert b"".join(store.open(d)) == data
    assert pending_uploads(store) == []


@pytest.mark.s3
def test_the_server_refuses_a_multipart_put_with_a_wrong_last_byte(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The server's multipart path: 12 MiB in 5 MiB parts, the last byte wrong: 422, and neither
    an object nor a pending upload."""
    from registry.api import create_app

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}", "s3", request)
    settings = settings.model_copy(update={"s3_part_bytes": 5 * MIB})
    reg = Registry.from_settings(settings, migrate=True)
    store = reg.store
    assert isinstance(store, S3BlobStore) and store.part_size == 5 * MIB
    data = os.urandom(12 * MIB)
    d = digest_of(data)
    try:
        with ServerThread(create_app(settings, reg, worker=False)) as srv:
            bad = data[:-1] + bytes([data[-1] ^ 1])
            resp = httpx.put(f"{srv.url}/v1/blobs/{d}", content=bad, headers=srv.auth, timeout=120)
            assert resp.status_code == 422, resp.text
            assert resp.json()["code"] == "digest_mismatch"
            assert store.stat(d) is None
            assert objects(store) == []
            assert pending_uploads(store) == []
            resp = httpx.put(f"{srv.url}/v1/blobs/{d}", content=data, headers=srv.auth, timeout=120)
            assert resp.status_code == 201, resp.text
    finally:
        reg.close()
    assert b"".join(store.open(d)) == data
    assert pending_uploads(store) == []


def test_concurrent_uploads_share_one_big_part_buffer(s3: S3BlobStore) -> None:
    """One upload at a time gets the configured part size; one running meanwhile gets S3's
    smallest part (the server's memory bound, see storage.s3.SMALL_PART_SIZE). A multipart
    object's ETag ends in -<parts>."""
    big = S3BlobStore(s3.client, s3.bucket, "adapters", part_size=32 * MIB)
    inner = os.urandom(12 * MIB)
    outer = os.urandom(6 * MIB)

    class StartsAnother:
        """The outer upload's body, which uploads `inner` while the outer upload is running."""

        def __init__(self) -> None:
            self._raw = io.BytesIO(outer)

        def read(self, n: int = -1) -> bytes:
            if self._raw.tell() == 0:
                big.put(io.BytesIO(inner), digest_of(inner), len(inner))
            return self._raw.read(n)

    def parts(data: bytes) -> str:
        etag = big.client.stat_object(big.bucket, big.key_for(digest_of(data))).etag or ""
        return etag.rpartition("-")[2] if "-" in etag else "1"

    big.put(StartsAnother(), digest_of(outer), len(outer))
    assert SMALL_PART_SIZE == 5 * MIB
    assert parts(inner) == "3"  # 12 MiB in 5 MiB parts, while the outer one held the big parts
    assert parts(outer) == "1"  # 6 MiB in one 32 MiB part
    big.delete(digest_of(inner))
    big.put(io.BytesIO(inner), digest_of(inner), len(inner))
    assert parts(inner) == "1"  # alone, it gets the big part again
    assert b"".join(big.open(digest_of(inner))) == inner
    assert b"".join(big.open(digest_of(outer))) == outer
    assert pending_uploads(big) == []


def test_the_part_size_is_a_setting(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from registry.config import Settings

    s = Settings(home=tmp_path, blob_url="s3://b/p", s3_endpoint="127.0.0.1:9", s3_part_bytes=8 * MIB)
    store = storage.open_store(s.effective_blob_url, s.s3_options())
    assert isinstance(store, S3BlobStore) and store.part_size == 8 * MIB
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, s3_part_bytes=4 * MIB)  # under S3's smallest part


def test_a_local_file_goes_in_half_parts_two_at_a_time(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    """A regular file (an embedded push, a worker's output: hashed by the caller just before) is
    sent in parts of half the part size, two in flight (storage.s3.FILE_PARALLEL_UPLOADS); a body
    that arrives as a stream keeps whole parts, one at a time. A file that changed since it was
    hashed is still refused and leaves no object and no pending upload."""
    client = Minio(s3_endpoint, access_key="test", secret_key="test", secure=False, region="us-east-1")
    store = S3BlobStore(client, s3_bucket, "adapters", part_size=10 * MIB)
    data = os.urandom(21 * MIB)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    def parts(d: str) -> str:
        etag = client.stat_object(store.bucket, store.key_for(d)).etag or ""
        return etag.rpartition("-")[2]

    with path.open("rb") as f:
        store.put(f, digest_of(data), len(data))
    assert parts(digest_of(data)) == "5"  # 21 MiB in 5 MiB parts
    assert b"".join(store.open(digest_of(data))) == data
    other = os.urandom(21 * MIB)
    store.put(io.BytesIO(other), digest_of(other), len(other))
    assert parts(digest_of(other)) == "3"  # a stream: 10 MiB parts
    changed = data[:-1] + bytes([data[-1] ^ 1])
    path.write_bytes(changed)  # changed since it was hashed as `data`
    gone = digest_of(data[:-2] + b"xx")
    with path.open("rb") as f, pytest.raises(storage.DigestMismatch):
        store.put(f, gone, len(data))
    assert store.stat(gone) is None
    assert sorted(objects(store)) == sorted([store.key_for(digest_of(data)), store.key_for(digest_of(other))])
    assert pending_uploads(store) == []
