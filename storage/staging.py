"""A staging area in the blob store: numbered parts of an upload, kept until whoever completes
the upload reads them back, in order, into a blob.

It lives in the store every replica shares (the file store: `<root>/staging/<area>/<upload>/`;
S3: objects under `<prefix>/staging/<area>/<upload>/`), so a part sent to one replica is read by
the replica that gets the completion. Parts are plain objects, not an S3 multipart upload: a
blob's key holds verified bytes only, and a multipart upload completed at the blob's key would
make it visible before anyone hashed it; S3 also wants parts of 5 MiB at least, smaller than a
client may be told to send (`hub_multipart_chunk_bytes`). The completion streams the parts into
the store's `put`, which verifies the whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from storage.atomic import atomic_file
from storage.base import CHUNK_SIZE, BlobNotFound, BlobStore, Readable, SizeMismatch, UnsupportedScheme

if TYPE_CHECKING:
    from storage.local import LocalBlobStore
    from storage.s3 import S3BlobStore

STAGING = "staging"
"""The folder (file store) or key prefix (S3) under the store's root that holds staging areas:
beside `sha256/` and `tmp/`, so no listing of blobs (gc, fsck) sees a part."""


class Staging(Protocol):
    """Parts of uploads, by upload id (letters, digits, `-`, `_`) and part number (from 1)."""

    def put_part(self, upload: str, number: int, stream: Readable, length: int) -> str:
        """Store exactly `length` bytes of `stream` as part `number` of `upload` (a part sent again
        replaces the first, whole); returns their sha256 (hex).

        Raises:
            SizeMismatch: the stream held fewer bytes (nothing is stored).
        """
        ...

    def part_sizes(self, upload: str) -> dict[int, int]:
        """The parts of `upload` stored so far: number -> size."""
        ...

    def open_part(self, upload: str, number: int) -> Iterator[bytes]:
        """The bytes of one part, in chunks (BlobNotFound when absent)."""
        ...

    def discard(self, upload: str) -> None:
        """Remove every part of `upload` (none: nothing happens)."""
        ...

    def uploads(self) -> list[str]:
        """The ids of the uploads that have parts staged, sorted."""
        ...

    def remove_stale(self, older_than_s: float) -> int:
        """Remove the uploads no part of which was written in the last `older_than_s` seconds
        (nobody completed them: a client gave up, a replica was killed); returns how many."""
        ...


def staging_for(store: BlobStore, area: str) -> Staging:
    """The staging area `area` of `store`.

    Raises:
        UnsupportedScheme: a store of a kind with no staging area.
    """
    from storage.local import LocalBlobStore
    from storage.s3 import S3BlobStore

    check_id(area)
    if isinstance(store, LocalBlobStore):
        return LocalStaging(store, area)
    if isinstance(store, S3BlobStore):
        return S3Staging(store, area)
    raise UnsupportedScheme(f"the blob store {store.url} has no staging area")


def check_id(text: str) -> str:
    """`text`, if it is a safe single path segment (letters, digits, `-`, `_`), else ValueError."""
    if not text or len(text) > 128 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise ValueError(f"{text!r} is not an upload id (letters, digits, '-', '_')")
    return text


def _part_name(number: int) -> str:
    if number < 1:
        raise ValueError(f"part number {number} is below 1")
    return f"{number:05d}.part"


def _part_number(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "part" and stem.isdigit() else None


class LocalStaging:
    """Parts as files under `<blob root>/staging/<area>/<upload>/`, written atomically (temp file
    in the same folder, fsync, rename)."""

    def __init__(self, store: LocalBlobStore, area: str) -> None:
        self.root = store.root / STAGING / area

    def put_part(self, upload: str, number: int, stream: Readable, length: int) -> str:
        folder = self.root / check_id(upload)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / _part_name(number)
        h = hashlib.sha256()
        written = 0
        with atomic_file(final, prefix=f".{number:05d}.", fsync_dir=False) as f:
            while written < length and (chunk := stream.read(min(CHUNK_SIZE, length - written))):
                written += len(chunk)
                h.update(chunk)
                f.write(chunk)
            if written != length:
                raise SizeMismatch(length, written)
        return h.hexdigest()

    def part_sizes(self, upload: str) -> dict[int, int]:
        sizes: dict[int, int] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / check_id(upload)):
                number = _part_number(entry.name)
                if number is not None:
                    with contextlib.suppress(FileNotFoundError):
                        sizes[number] = entry.stat().st_size
        return sizes

    def open_part(self, upload: str, number: int) -> Iterator[bytes]:
        path = self.root / check_id(upload) / _part_name(number)
        try:
            f = path.open("rb")
        except FileNotFoundError as err:
            raise BlobNotFound(f"part {number} of upload {upload}") from err
        return _chunks(f)

    def discard(self, upload: str) -> None:
        shutil.rmtree(self.root / check_id(upload), ignore_errors=True)

    def uploads(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def remove_stale(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for folder in os.scandir(self.root):
                try:
                    if folder.stat().st_mtime < cutoff:  # a part written there touches the folder
                        shutil.rmtree(folder.path, ignore_errors=True)
                        removed += 1
                except FileNotFoundError:
                    continue  # completed (or swept by another replica) meanwhile
        return removed


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


class S3Staging:
    """Parts as objects `<prefix>/staging/<area>/<upload>/<number>.part` of the store's bucket.
    A part larger than the store's part size goes up as an S3 multipart upload of its own key
    (the SDK's put_object), so a replica killed while receiving one leaves a pending upload under
    the staging prefix: the stale sweep aborts those too."""

    def __init__(self, store: S3BlobStore, area: str) -> None:
        self.store = store
        self.prefix = store._key(STAGING, area) + "/"

    def _key(self, upload: str, number: int) -> str:
        return f"{self.prefix}{check_id(upload)}/{_part_name(number)}"

    def put_part(self, upload: str, number: int, stream: Readable, length: int) -> str:
        reader = _CountingReader(stream, length)
        self.store.client.put_object(
            self.store.bucket,
            self._key(upload, number),
            cast(BinaryIO, reader),
            length=length,
            part_size=max(5 * 1024**2, min(self.store.part_size, length)),
            num_parallel_uploads=1,  # one part in flight: see storage.s3.PARALLEL_UPLOADS
        )
        return reader.hexdigest()

    def part_sizes(self, upload: str) -> dict[int, int]:
        sizes: dict[int, int] = {}
        folder = f"{self.prefix}{check_id(upload)}/"
        for obj in self.store.client.list_objects(self.store.bucket, prefix=folder, recursive=True):
            number = _part_number((obj.object_name or "").rsplit("/", 1)[-1])
            if number is not None:
                sizes[number] = int(obj.size or 0)
        return sizes

    def open_part(self, upload: str, number: int) -> Iterator[bytes]:
        from minio.error import S3Error

        from storage.s3 import _MISSING_CODES, _stream

        try:
            resp = self.store.client.get_object(self.store.bucket, self._key(upload, number))
        except S3Error as err:
            if err.code in _MISSING_CODES:
                raise BlobNotFound(f"part {number} of upload {upload}") from err
            raise
        return _stream(resp)

    def discard(self, upload: str) -> None:
        folder = f"{self.prefix}{check_id(upload)}/"
        for obj in self.store.client.list_objects(self.store.bucket, prefix=folder, recursive=True):
            if obj.object_name:
                self.store.client.remove_object(self.store.bucket, obj.object_name)

    def uploads(self) -> list[str]:
        listing = self.store.client.list_objects(self.store.bucket, prefix=self.prefix, recursive=True)
        return sorted({(o.object_name or "")[len(self.prefix) :].split("/", 1)[0] for o in listing} - {""})

    def remove_stale(self, older_than_s: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        newest: dict[str, datetime] = {}
        keys: dict[str, list[str]] = {}
        for obj in self.store.client.list_objects(self.store.bucket, prefix=self.prefix, recursive=True):
            name = obj.object_name or ""
            upload = name[len(self.prefix) :].split("/", 1)[0]
            if not upload or obj.last_modified is None:
                continue
            keys.setdefault(upload, []).append(name)
            newest[upload] = max(newest.get(upload, obj.last_modified), obj.last_modified)
        stale = [u for u, t in newest.items() if t < cutoff]
        for upload in stale:
            for name in keys[upload]:
                self.store.client.remove_object(self.store.bucket, name)
        aborted = 0
        for key, upload_id, started in self.store._pending_uploads_dated(self.prefix):
            if started is not None and started < cutoff:
                self.store.client._abort_multipart_upload(self.store.bucket, key, upload_id)
                aborted += 1
        return len(stale) + aborted


class _CountingReader:
    """Reads `length` bytes of `raw`, hashing them, and raises SizeMismatch where `raw` ends
    sooner: the SDK then sends nothing (one part) or aborts its multipart upload."""

    def __init__(self, raw: Readable, length: int) -> None:
        self._raw = raw
        self._length = self._left = length
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._raw.read(self._left if n < 0 else min(n, self._left))
        if not data:
            raise SizeMismatch(self._length, self._length - self._left)
        self._left -= len(data)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
