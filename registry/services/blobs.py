"""Blob presence and verified uploads."""

from __future__ import annotations

import storage
from registry.errors import BadRequest, from_storage_error
from storage import BlobInfo, BlobStore
from storage.base import ProgressCallback, Readable

MAX_DIGESTS_PER_CHECK = 10_000


def _store_errors() -> tuple[type[Exception], ...]:
    """What a store call may raise besides a bug: its own errors, and the S3 SDK's when an s3://
    store lets one through (imported lazily: a file:// registry never loads minio)."""
    try:
        from minio.error import S3Error
    except ImportError:  # pragma: no cover - minio is a dependency
        return (storage.StorageError,)
    return (storage.StorageError, S3Error)


def missing_blobs(store: BlobStore, digests: list[str]) -> list[str]:
    """The digests, in order and without duplicates, that the store does not hold."""
    if len(digests) > MAX_DIGESTS_PER_CHECK:
        raise BadRequest(f"at most {MAX_DIGESTS_PER_CHECK} digests per check")
    out: list[str] = []
    for d in dict.fromkeys(digests):
        try:
            storage.check_digest(d)
        except storage.InvalidDigest as err:
            raise from_storage_error(err) from err
        try:
            held = store.stat(d)
        except _store_errors() as err:
            raise from_storage_error(err) from err
        if held is None:
            out.append(d)
    return out


def upload_blob(
    store: BlobStore, stream: Readable, digest: str, size: int, progress: ProgressCallback | None = None
) -> BlobInfo:
    """Store a blob, verified while streaming; a blob already present is not written again."""
    try:
        storage.check_digest(digest)
        existing = store.stat(digest)
        if existing is not None and existing.size == size:
            return existing
        return store.put(stream, digest, size, progress)
    except _store_errors() as err:
        raise from_storage_error(err) from err


def read_range(store: BlobStore, digest: str, start: int, length: int) -> bytes:
    try:
        return b"".join(store.open(digest, start, start + length))
    except _store_errors() as err:
        raise from_storage_error(err) from err
