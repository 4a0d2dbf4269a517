"""The Hub protocol's LFS transfers: which objects to upload and where, one-time upload URLs
signed with the server's key, and multipart uploads staged part by part.

An upload URL carries no credentials of the client (huggingface_hub sends none on the PUT): it is
an HMAC over (expiry, object, size, uploader's user and token ids[, upload id, part]) with a key
only the server holds, so it cannot be forged, altered or used after it expires. It is single-use
in effect: the bytes it accepts must hash to its object id (the store verifies while streaming),
and once the blob exists a second PUT of the same bytes changes nothing; other bytes are refused.

The URL names who asked for it (the `Uploader`): the PUT (or the multipart completion) acts as that
user, with today's rights narrowed as their token (a revoked token's URLs upload nothing), and records
their proof of possession (`blobs.record_upload`), whoever sends the bytes. An object the store
holds is "nothing to upload" only for a principal that may use it (`blobs.missing_for`, the rule of
/v1/blobs/missing); anyone else uploads its bytes, so knowing a digest is never enough to use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from registry.access.authentication import job_principal
from registry.access.checks import require_writer
from registry.access.principal import Principal
from registry.bounds import LFS_BATCH_OBJECTS, LFS_BATCH_PARTS
from registry.db.engine import unit_of_work
from registry.errors import (
    BadRequest,
    PushTooLarge,
    UploadUrlRefused,
    XetNotSupported,
    from_storage_error,
    store_errors,
)
from registry.services.blobs import missing_for, record_upload, upload_as
from registry.services.context import Registry
from registry.services.hub import check_write
from storage import BlobInfo, BlobStore, check_digest
from storage.base import Readable
from storage.staging import Staging, check_id, staging_for

TRANSFERS = ("basic", "multipart")
XET_HINT = (
    "this LFS batch speaks the Git LFS transfers (basic, multipart); Xet uploads go through "
    "/api/models/{repo}/xet-write-token/{revision} and the CAS it names, which huggingface_hub with "
    "hf_xet (its default install) uses by itself: upload with huggingface_hub, or offer basic"
)
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Signer:
    key: bytes
    ttl_s: int

    def sign(self, expires: int, *parts: str) -> str:
        msg = "\n".join((str(expires), *parts)).encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def expiry(self) -> int:
        return int(time.time()) + self.ttl_s

    def check(self, signature: str, expires: int, *parts: str) -> None:
        """Raises UploadUrlRefused when the signature does not match or the URL has expired."""
        if not hmac.compare_digest(self.sign(expires, *parts), signature):
            raise UploadUrlRefused("the upload URL is not one this registry issued (or it was altered)")
        if expires < time.time():
            raise UploadUrlRefused("the upload URL has expired; ask the LFS batch API for a new one")


@dataclass(frozen=True)
class Uploader:
    """Who an upload URL was issued to: carried in the URL (`user`, `token` query parameters) and
    signed with it, since the PUT carries no credentials. None: the operator (in-process only)."""

    user_id: int | None
    token_id: int | None

    @classmethod
    def of(cls, principal: Principal) -> Uploader:
        return cls(principal.user_id, principal.token_id)

    @property
    def fields(self) -> tuple[str, str]:
        """What the signature covers."""
        return _id_text(self.user_id), _id_text(self.token_id)

    @property
    def query(self) -> str:
        return f"user={_id_text(self.user_id)}&token={_id_text(self.token_id)}"

    def principal(self, reg: Registry) -> Principal:
        """The principal the upload acts as: the user with today's grants, narrowed as the token
        the URL was issued through (revoked token or deleted user: anonymous, which may upload
        nothing). Expiry is the URL's own."""
        with unit_of_work(reg.sessions) as session:
            return job_principal(session, self.user_id, self.token_id, "operator")


def _id_text(value: int | None) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class LfsObject:
    oid: str
    """sha256 hex."""
    size: int
    action: str | None
    """None: the store already holds it; "basic" or "multipart"."""
    chunk: int = 0
    """The part size of a multipart upload."""
    error: str | None = None
    error_code: int = 0

    @property
    def parts(self) -> int:
        return -(-self.size // self.chunk) if self.chunk else 0


def choose_transfer(transfers: list[str]) -> str:
    """The transfer both sides speak. A client that offers only Xet is told how to switch."""
    for t in transfers or ["basic"]:
        if t in TRANSFERS:
            return t
    raise XetNotSupported(XET_HINT)


def check_batch(objects: list[tuple[str, int]]) -> None:
    """Refuse a batch larger than one answer may be, before any of it is looked up."""
    if len(objects) > LFS_BATCH_OBJECTS:
        raise BadRequest(
            f"{len(objects)} objects in one LFS batch call; at most {LFS_BATCH_OBJECTS}: ask in smaller batches",
            field="objects",
        )


def part_size(size: int, chunk_bytes: int, multipart_objects: int) -> int:
    """The part size of one of `multipart_objects` objects uploaded in parts: the configured chunk,
    or larger parts when the answer's part budget (LFS_BATCH_PARTS) would not hold them all."""
    most = max(1, LFS_BATCH_PARTS // max(1, multipart_objects))
    return max(chunk_bytes, -(-size // most))


def plan_upload(
    reg: Registry,
    repo_id: str,
    writer: Principal,
    objects: list[tuple[str, int]],
    transfers: list[str],
    max_bytes: int,
    chunk_bytes: int,
) -> tuple[str, list[LfsObject]]:
    """The LFS batch answer for an upload: per object, nothing (held, and the writer may use it),
    a single PUT, or parts (of `chunk_bytes`, or larger, see `part_size`) when the client speaks
    multipart and the object is larger. A held object the writer may not use gets an upload action
    like a missing one: the writer proves it holds the bytes, and learns nothing about what the
    store holds."""
    check_batch(objects)
    check_write(reg, writer, repo_id)
    transfer = choose_transfer(transfers)
    multipart = "multipart" in transfers
    valid = [f"sha256:{oid}" for oid, size in objects if _is_hex64(oid) and 0 <= size <= max_bytes]
    missing = set(missing_for(reg, writer, valid)) if valid else set()
    planned: list[LfsObject] = []
    for oid, size in objects:
        if not _is_hex64(oid) or size < 0:
            planned.append(LfsObject(oid, size, None, error="oid must be a sha256 (64 hex)", error_code=422))
            continue
        if size > max_bytes:
            planned.append(
                LfsObject(
                    oid,
                    size,
                    None,
                    error=f"push_too_large: {size} bytes; the limit is {max_bytes} (ADAPTERS_MAX_PUSH_BYTES)",
                    error_code=422,
                )
            )
            continue
        held = None if f"sha256:{oid}" in missing else reg.store.stat(f"sha256:{oid}")
        if held is not None and held.size == size:
            planned.append(LfsObject(oid, size, None))
        elif multipart and size > chunk_bytes:
            planned.append(LfsObject(oid, size, "multipart", chunk=chunk_bytes))
        else:
            planned.append(LfsObject(oid, size, "basic"))
    in_parts = sum(o.action == "multipart" for o in planned)
    out = [
        replace(o, chunk=part_size(o.size, chunk_bytes, in_parts)) if o.action == "multipart" else o
        for o in planned
    ]
    return transfer, out


def _is_hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise PushTooLarge(
            f"blob of {size} bytes; the limit is {max_bytes} (ADAPTERS_MAX_PUSH_BYTES)",
            size=size,
            limit=max_bytes,
        )


def put_object(reg: Registry, uploader: Principal, stream: Readable, oid: str, size: int) -> BlobInfo:
    """A basic transfer (or a multipart completion): the body, verified against the object id while
    it streams, as `uploader` (the principal the URL was issued to), whose proof of possession is
    recorded. Once the object is held, its URL is spent: the same bytes again (a client's retry)
    change nothing but the proof, other bytes are refused."""
    require_writer(uploader)
    digest = check_digest(f"sha256:{oid}")
    held = reg.store.stat(digest)
    if held is None or held.size != size:
        return upload_as(reg, uploader, stream, digest, size)
    h = hashlib.sha256()
    read = 0
    while chunk := stream.read(1024**2):
        read += len(chunk)
        if read > size:
            break
        h.update(chunk)
    if read != size or h.hexdigest() != oid:
        raise UploadUrlRefused("the upload URL was used already, for other bytes than these")
    record_upload(reg, uploader, digest)  # the bytes were sent and verified: proof, like upload_as's
    return held


def new_upload_id() -> str:
    """The id of a new multipart upload: its folder (or key prefix) in the staging area."""
    return secrets.token_urlsafe(16)


class PartStore:
    """Parts of multipart uploads, staged in the blob store (`storage.staging`, area
    `hub-parts`) until the completion call streams them, in order and verified, into a blob.
    Every replica shares the store: parts sent to different replicas meet at the completion,
    which any replica may take, and the stale sweep of any replica reclaims an upload a killed
    replica (or a client that gave up) left behind."""

    AREA = "hub-parts"

    def __init__(self, staging: Staging) -> None:
        self.staging = staging

    @classmethod
    def of(cls, store: BlobStore) -> PartStore:
        return cls(staging_for(store, cls.AREA))

    @staticmethod
    def _id(upload_id: str) -> str:
        try:
            return check_id(upload_id)
        except ValueError as err:
            raise BadRequest("invalid upload id") from err

    def put_part(self, upload_id: str, number: int, stream: Readable, length: int) -> str:
        """Store part `number` (a retried part replaces the first, whole); its ETag is its sha256."""
        upload = self._id(upload_id)
        try:
            return self.staging.put_part(upload, number, stream, length)
        except store_errors() as err:
            raise from_storage_error(err) from err

    def complete(
        self,
        reg: Registry,
        uploader: Principal,
        upload_id: str,
        oid: str,
        size: int,
        etags: list[str],
        chunk_bytes: int,
    ) -> BlobInfo:
        """Stream the parts, in order, into the store as one blob verified against `oid`, as
        `uploader` (its proof recorded, as `put_object`); each part is hashed on the way against
        its ETag. The staged parts are removed whatever the outcome."""
        upload = self._id(upload_id)
        try:
            try:
                stored = self.staging.part_sizes(upload)
            except store_errors() as err:
                raise from_storage_error(err) from err
            for n in range(1, len(etags) + 1):
                if n not in stored:
                    raise BadRequest(f"part {n} was not uploaded")
                if stored[n] != part_length(size, chunk_bytes, n):
                    raise BadRequest(
                        f"part {n} has {stored[n]} bytes; it must have {part_length(size, chunk_bytes, n)}"
                    )
            reader = _PartsReader(self.staging, upload, [e.strip('"') for e in etags])
            return put_object(reg, uploader, reader, oid, size)
        finally:
            with contextlib.suppress(*store_errors()):
                self.staging.discard(upload)  # what a failure leaves, the stale sweep takes

    def remove_stale(self, older_than_s: float) -> int:
        """Drop the parts of multipart uploads nobody completed (untouched for `older_than_s`);
        returns how many uploads' parts were removed."""
        return self.staging.remove_stale(older_than_s)


class _PartsReader:
    """read(n) over the staged parts in turn, each hashed as it passes and refused (BadRequest,
    raised inside the store's put, which then stores nothing) when it is not its ETag's."""

    def __init__(self, staging: Staging, upload: str, etags: list[str]) -> None:
        self._staging = staging
        self._upload = upload
        self._etags = etags
        self._number = 0
        self._chunks: Iterator[bytes] = iter(())
        self._hash = hashlib.sha256()
        self._buf = b""

    def _next_chunk(self) -> bytes | None:
        while True:
            chunk = next(self._chunks, None)
            if chunk is not None:
                self._hash.update(chunk)
                return chunk
            if self._number:  # the part just read to its end
                if self._hash.hexdigest() != self._etags[self._number - 1]:
                    raise BadRequest(f"part {self._number}: its ETag does not match the uploaded part")
            if self._number == len(self._etags):
                return None
            self._number += 1
            self._hash = hashlib.sha256()
            try:
                self._chunks = self._staging.open_part(self._upload, self._number)
            except store_errors() as err:
                raise from_storage_error(err) from err

    def read(self, n: int = -1) -> bytes:
        out = bytearray(self._buf)
        while n < 0 or len(out) < n:
            chunk = self._next_chunk()
            if chunk is None:
                break
            out += chunk
        if n >= 0 and len(out) > n:
            self._buf = bytes(out[n:])
            del out[n:]
        else:
            self._buf = b""
        return bytes(out)


def part_length(size: int, chunk_bytes: int, number: int) -> int:
    """The length part `number` (from 1) of an object of `size` bytes must have."""
    parts = -(-size // chunk_bytes)
    if not 1 <= number <= min(parts, MAX_PARTS):
        raise BadRequest(f"part {number} is outside 1..{parts}")
    return min(chunk_bytes, size - (number - 1) * chunk_bytes)
