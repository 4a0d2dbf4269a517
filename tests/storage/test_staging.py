"""The staging area of both blob backends: parts of uploads kept in the shared store, read back
by another process's store object, replaced whole, swept when stale, never listed as blobs."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from registry.config import Settings
from storage import BlobStore, SizeMismatch, open_store
from storage.staging import LocalStaging, staging_for


def _store(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> BlobStore:
    from tests.conftest import make_settings

    s: Settings = make_settings(tmp_path, "sqlite://", backend, request)
    return open_store(s.effective_blob_url, s.s3_options())


def test_parts_are_shared_replaced_whole_and_not_blobs(
    tmp_path: Path, blob_backend: str, request: pytest.FixtureRequest
) -> None:
    # Two store objects on one store: two replicas.
    mine = staging_for(_store(tmp_path, blob_backend, request), "hub-parts")
    other_store = _store(tmp_path, blob_backend, request)
    theirs = staging_for(other_store, "hub-parts")
    a, b = os.urandom(5000), os.urandom(123)
    assert mine.put_part("up1", 1, io.BytesIO(a), len(a)) == hashlib.sha256(a).hexdigest()
    assert theirs.put_part("up1", 2, io.BytesIO(b), len(b)) == hashlib.sha256(b).hexdigest()
    assert mine.part_sizes("up1") == theirs.part_sizes("up1") == {1: 5000, 2: 123}
    assert b"".join(theirs.open_part("up1", 1)) == a
    again = os.urandom(5000)  # a retried part replaces the first, whole
    theirs.put_part("up1", 1, io.BytesIO(again), len(again))
    assert b"".join(mine.open_part("up1", 1)) == again
    assert list(other_store.iter_blobs()) == []  # gc and fsck never see a part
    assert mine.uploads() == ["up1"]
    mine.discard("up1")
    assert theirs.uploads() == [] and theirs.part_sizes("up1") == {}


def test_a_short_part_stores_nothing(
    tmp_path: Path, blob_backend: str, request: pytest.FixtureRequest
) -> None:
    staging = staging_for(_store(tmp_path, blob_backend, request), "hub-parts")
    with pytest.raises(SizeMismatch):
        staging.put_part("up", 1, io.BytesIO(b"x" * 10), 11)
    assert staging.part_sizes("up") == {}
    # A stream longer than the part: exactly `length` bytes are kept.
    staging.put_part("up", 1, io.BytesIO(b"y" * 20), 11)
    assert staging.part_sizes("up") == {1: 11}


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "é", "x" * 129])
def test_upload_ids_are_one_safe_segment(tmp_path: Path, request: pytest.FixtureRequest, bad: str) -> None:
    staging = staging_for(_store(tmp_path, "file", request), "hub-parts")
    with pytest.raises(ValueError, match="upload id"):
        staging.put_part(bad, 1, io.BytesIO(b"x"), 1)


def test_stale_uploads_are_swept(tmp_path: Path, blob_backend: str, request: pytest.FixtureRequest) -> None:
    staging = staging_for(_store(tmp_path, blob_backend, request), "hub-parts")
    for upload in ("dead", "live"):
        staging.put_part(upload, 1, io.BytesIO(b"x" * 100), 100)
    if isinstance(staging, LocalStaging):
        old = time.time() - 7200
        os.utime(staging.root / "dead", (old, old))
        assert staging.remove_stale(3600) == 1
        assert staging.uploads() == ["live"]
    else:  # S3 dates objects itself: a recent part keeps its upload, a cutoff past it does not
        assert staging.remove_stale(3600) == 0
        assert staging.remove_stale(-60) == 2
        assert staging.uploads() == []
