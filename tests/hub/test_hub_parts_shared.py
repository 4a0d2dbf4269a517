"""Hub multipart parts live in the shared blob store: parts sent to one replica, the completion
taken by another; a part that is not its ETag's, or a missing one, stores nothing."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.access.principal import OPERATOR
from registry.errors import BadRequest
from registry.services.context import Registry
from registry.services.hub_lfs import PartStore, new_upload_id

CHUNK = 4096


@pytest.fixture
def replicas(
    tmp_path: Path, blob_backend: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Registry, Registry]]:
    """Two registries on one database and one store, as two replicas have."""
    from tests.conftest import db_url_for, make_settings

    settings = make_settings(tmp_path, db_url_for("sqlite", tmp_path, request), blob_backend, request)
    one = Registry.from_settings(settings, migrate=True)
    two = Registry.from_settings(settings)
    yield one, two
    one.close()
    two.close()


def _send(parts: list[PartStore], upload: str, data: bytes) -> list[str]:
    """Part n to replica n % 2; the ETags the client gets back."""
    etags = []
    for n, start in enumerate(range(0, len(data), CHUNK), start=1):
        piece = data[start : start + CHUNK]
        etags.append(parts[n % 2].put_part(upload, n, io.BytesIO(piece), len(piece)))
    return etags


def test_parts_on_two_replicas_complete_on_either(replicas: tuple[Registry, Registry]) -> None:
    one, two = replicas
    parts = [PartStore.of(one.store), PartStore.of(two.store)]
    data = os.urandom(3 * CHUNK + 100)
    oid = hashlib.sha256(data).hexdigest()
    upload = new_upload_id()
    etags = _send(parts, upload, data)
    info = parts[1].complete(two, OPERATOR, upload, oid, len(data), [f'"{e}"' for e in etags], CHUNK)
    assert info.size == len(data)
    assert b"".join(one.store.open(f"sha256:{oid}")) == data
    assert parts[0].staging.uploads() == []


@pytest.mark.parametrize("fault", ["etag", "missing"])
def test_a_wrong_or_missing_part_stores_nothing(replicas: tuple[Registry, Registry], fault: str) -> None:
    one, two = replicas
    parts = [PartStore.of(one.store), PartStore.of(two.store)]
    data = os.urandom(3 * CHUNK)
    oid = hashlib.sha256(data).hexdigest()
    upload = new_upload_id()
    etags = _send(parts, upload, data)
    if fault == "etag":
        etags[2] = hashlib.sha256(b"other").hexdigest()
        match = "part 3: its ETag"
    else:
        parts[0].staging.discard(upload)
        parts[0].put_part(upload, 1, io.BytesIO(data[:CHUNK]), CHUNK)
        match = "part 2 was not uploaded"
    with pytest.raises(BadRequest, match=match):
        parts[0].complete(one, OPERATOR, upload, oid, len(data), etags, CHUNK)
    assert one.store.stat(f"sha256:{oid}") is None
    assert parts[1].staging.uploads() == []
