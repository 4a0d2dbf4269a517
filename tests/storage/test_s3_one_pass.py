"""S3 uploads go straight to the blob's final key in one pass, and are still atomic: a wrong
digest, a short or a long body leaves no object and no pending multipart upload (moto server)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import httpx
import pytest
from minio import Minio

import storage
from registry.services.context import Registry
from storage.s3 import S3BlobStore
from tests.conftest import ServerThread, make_settings

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


def test_the_part_size_is_a_setting(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from registry.config import Settings

    s = Settings(home=tmp_path, blob_url="s3://b/p", s3_endpoint="127.0.0.1:9", s3_part_bytes=8 * MIB)
    store = storage.open_store(s.effective_blob_url, s.s3_options())
    assert isinstance(store, S3BlobStore) and store.part_size == 8 * MIB
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, s3_part_bytes=4 * MIB)  # under S3's smallest part
