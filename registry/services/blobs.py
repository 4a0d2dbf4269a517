"""Blob presence and verified uploads."""

from __future__ import annotations

import storage
from registry.access.checks import blob_readable, blobs_unusable, require_writer
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import insert_ignoring_duplicates, unit_of_work
from registry.errors import BadRequest, BlobMissing, NotFound, from_storage_error, store_errors
from registry.services.blob_guard import being_swept
from registry.services.context import Registry
from registry.services.timeutil import now
from storage import BlobInfo, BlobStore
from storage.base import ProgressCallback, Readable

MAX_DIGESTS_PER_CHECK = 10_000


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
        except store_errors() as err:
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
    except store_errors() as err:
        raise from_storage_error(err) from err


def read_range(store: BlobStore, digest: str, start: int, length: int) -> bytes:
    try:
        return b"".join(store.open(digest, start, start + length))
    except store_errors() as err:
        raise from_storage_error(err) from err


def read_listed(store: BlobStore, path: str, digest: str, start: int, length: int) -> bytes:
    """`read_range` of a blob a manifest being committed lists. One that disappeared since the
    existence check (a gc run sweeping an unreferenced blob) is BlobMissing, 409: upload it again,
    exactly as if the check had not found it."""
    try:
        return read_range(store, digest, start, length)
    except NotFound as err:
        raise BlobMissing(
            f"{path}: blob {digest} is not in the store (garbage-collected meanwhile?); upload it again",
            path=path,
            digest=digest,
        ) from err


# ---------------------------------------------------------------- with access control
def missing_for(reg: Registry, principal: Principal, digests: list[str]) -> list[str]:
    """`missing_blobs` for a writer: a blob the principal may neither read nor has uploaded is
    reported missing too, so a push uploads it (proving possession) and the answer never tells
    whether someone else's blob exists."""
    require_writer(principal)
    missing = set(missing_blobs(reg.store, digests))
    with unit_of_work(reg.sessions) as session:
        # A blob a gc run is deleting is as good as gone: the push uploads it again after the
        # sweep, rather than being told "present" and refused at commit.
        missing |= being_swept(session, [d for d in digests if d not in missing])
        if not principal.is_operator:
            missing |= set(
                blobs_unusable(session, principal, [d for d in dict.fromkeys(digests) if d not in missing])
            )
    return [d for d in dict.fromkeys(digests) if d in missing]


def upload_as(
    reg: Registry,
    principal: Principal,
    stream: Readable,
    digest: str,
    size: int,
    progress: ProgressCallback | None = None,
) -> BlobInfo:
    """`upload_blob` for a writer of some namespace. A blob already stored is not written again
    only when the principal may use it; otherwise its bytes are read and verified like a new one,
    and the upload is recorded: the principal has proved it holds them."""
    require_writer(principal)
    try:
        storage.check_digest(digest)
    except storage.InvalidDigest as err:
        raise from_storage_error(err) from err
    if principal.is_operator:
        return upload_blob(reg.store, stream, digest, size, progress)
    with unit_of_work(reg.sessions) as session:
        usable = not blobs_unusable(session, principal, [digest])
    if usable:
        return upload_blob(reg.store, stream, digest, size, progress)
    try:
        info = reg.store.put(stream, digest, size, progress)
    except store_errors() as err:
        raise from_storage_error(err) from err
    record_upload(reg, principal, digest)
    return info


def record_upload(reg: Registry, principal: Principal, digest: str) -> None:
    """Record that `principal` proved it holds the bytes of `digest` (it sent them, verified against
    the digest): the blob is usable in its commits from now on (`blobs_unusable`). Only a user's
    proof is recorded; the operator may use every blob anyway."""
    if principal.user_id is None:
        return
    row = {"digest": digest, "user_id": principal.user_id, "created_at": now()}
    with unit_of_work(reg.sessions) as session:
        # One statement that tolerates its twin: two uploads of one new blob by one user (a README
        # two pushes share) both get here, and a read-then-insert lost the race with a 409.
        insert_ignoring_duplicates(session, m.BlobUpload, [row])


def require_readable(reg: Registry, principal: Principal, digest: str) -> None:
    """Raises NotFound (as for a blob that does not exist) unless `principal` may read a version
    or base that lists the blob."""
    storage.check_digest(digest)
    if principal.is_operator:
        return
    with unit_of_work(reg.sessions) as session:
        if not blob_readable(session, principal, digest):
            raise NotFound(f"blob {digest} does not exist", digest=digest)
