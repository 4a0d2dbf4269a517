"""The BlobStore interface: content-addressed bytes, nothing about adapters."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from storage.atomic import new_file

CHUNK_SIZE = 1024 * 1024
DIGEST_RE = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
"""Anchored with \\A and \\Z (`$` also matches before a trailing newline); callers use fullmatch."""


class Readable(Protocol):
    """What a blob store reads from: a file, an HTTP body, a download stream."""

    def read(self, n: int = -1, /) -> bytes: ...


ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just moved."""


class StorageError(Exception):
    """Base class of blob store errors; `code` is the stable error code."""

    code = "storage_error"


class BlobNotFound(StorageError, LookupError):
    code = "blob_not_found"

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} is not in the store")
        self.digest = digest


class DigestMismatch(StorageError, ValueError):
    code = "digest_mismatch"

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"content hashes to {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class SizeMismatch(StorageError, ValueError):
    code = "size_mismatch"

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"content is {actual} bytes, expected {expected}")
        self.expected = expected
        self.actual = actual


class InvalidDigest(StorageError, ValueError):
    code = "invalid_digest"

    def __init__(self, digest: str) -> None:
        super().__init__(f"{digest!r} is not a digest of the form sha256:<64 hex>")
        self.digest = digest


class UnsupportedScheme(StorageError, ValueError):
    code = "unsupported_blob_url"


def check_digest(digest: str) -> str:
    """Return `digest` if it is `sha256:<64 lowercase hex>`, else raise InvalidDigest."""
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidDigest(digest)
    return digest


def digest_hex(digest: str) -> str:
    return check_digest(digest).split(":", 1)[1]


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int


@dataclass(frozen=True)
class StoredBlob:
    """A blob as a listing of the store sees it: `modified` is when its bytes were last written
    (seconds since the epoch), what garbage collection's grace period is measured against."""

    digest: str
    size: int
    modified: float


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed storage. Every `put` is verified; a blob appears whole or not at all."""

    url: str

    def stat(self, digest: str) -> BlobInfo | None:
        """Size of a stored blob, or None when absent."""
        ...

    def put(
        self,
        stream: Readable,
        digest: str,
        size: int,
        progress: ProgressCallback | None = None,
    ) -> BlobInfo:
        """Store `stream`, verifying sha256 and length while streaming.

        Raises:
            DigestMismatch, SizeMismatch: nothing is stored.
        """
        ...

    def adopt(self, path: Path, digest: str, size: int, progress: ProgressCallback | None = None) -> BlobInfo:
        """Store the finished local file `path`, already hashed by the caller, as blob `digest`
        (a worker's output). A blob already present is kept. The local store takes the file
        without copying it (so it must not change afterwards); others upload it, verified as `put`.

        Raises:
            DigestMismatch, SizeMismatch: nothing is stored.
        """
        ...

    def open(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes [start, end) of a blob in chunks (end exclusive, None = to the end)."""
        ...

    def url_for(self, digest: str, expires_s: int = 3600) -> str | None:
        """A presigned download URL where the backend has one, else None."""
        ...

    def delete(self, digest: str) -> None:
        """Remove a blob (absent already: nothing happens)."""
        ...

    def iter_blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob (not partial uploads), in no particular order: what gc sweeps."""
        ...

    def remove_stale_uploads(self, older_than_s: float) -> int:
        """Remove what uploads that died part-way left behind (untouched for `older_than_s`
        seconds, so an upload still in progress in another process is kept); returns how many."""
        ...

    def check(self) -> None:
        """Raise if the store cannot be reached (readiness probe)."""
        ...

    def under(self, prefix: str) -> BlobStore:
        """The same kind of store under a separate key prefix (a folder of the local root, a key
        prefix in the bucket), for bytes that another layer keeps apart from the blobs, such as
        Xet's xorbs: its blobs are not this store's (`iter_blobs` lists neither in the other)."""
        ...


class HashingReader:
    """Wraps a binary stream, hashing and counting what is read through it."""

    def __init__(self, raw: Readable, progress: ProgressCallback | None = None) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._progress = progress
        self.length = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self.length += len(data)
            if self._progress is not None:
                self._progress(len(data))
        return data

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def verify(self, digest: str, size: int) -> None:
        """Raise SizeMismatch or DigestMismatch if what was read is not (digest, size)."""
        if self.length != size:
            raise SizeMismatch(size, self.length)
        if self.digest != digest:
            raise DigestMismatch(digest, self.digest)


class IterReader:
    """A read(n) file object over an iterator of byte chunks (a download or blob stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self._buf += chunk
        if n < 0:
            n = len(self._buf)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class VerifyingReader(HashingReader):
    """A HashingReader that never reads past `size` and refuses at the end of the stream: the read
    that completes `size` bytes raises SizeMismatch (the stream runs on) or DigestMismatch instead
    of returning them, and a stream that ends early raises SizeMismatch. A consumer that stops on
    an exception (the minio SDK aborts its multipart upload and, for a single part, never sends it)
    thus stores nothing unverified, in one pass."""

    def __init__(
        self, raw: Readable, digest: str, size: int, progress: ProgressCallback | None = None
    ) -> None:
        super().__init__(raw, progress)
        self.expected = (digest, size)

    def read(self, n: int = -1) -> bytes:
        digest, size = self.expected
        left = size - self.length
        if left <= 0:
            self.finish()
            return b""
        data = super().read(left if n < 0 else min(n, left))
        if not data:
            raise SizeMismatch(size, self.length)
        if self.length == size:
            self.finish()
        return data

    def finish(self) -> None:
        """Verify now (a zero-length blob has no last read): the stream must end here and hash right."""
        digest, size = self.expected
        if self.length == size and self._raw.read(1):
            raise SizeMismatch(size, size + 1)
        self.verify(digest, size)


def write_verified(
    chunks: Iterable[bytes],
    target: Path,
    digest: str,
    size: int,
    progress: ProgressCallback | None = None,
    *,
    durable: bool = True,
) -> None:
    """Write `chunks` to the new file `target` while hashing them, fsync it (unless not `durable`),
    and check it is (digest, size): each byte is written once. On any failure `target` is removed.

    `durable=False` is for a pull's output, which, like `cp`'s or a git checkout's, need not
    survive a power cut: the cache entry it becomes is hashed again whenever a pull copies it out
    and size-checked before a worker uses it (registry.client.transfer), and fsync was most of a
    pull's time (537 MB: 1.3 s of fsync against 0.4 s of hashing and copying, bench/push_pull.py).

    Raises:
        DigestMismatch, SizeMismatch: the bytes are not the blob's (nothing is left at `target`).
    """
    h = hashlib.sha256()  # chunks as they come: no re-buffering (a copy per byte, measured)
    length = 0
    with new_file(target, durable=durable) as out:
        for chunk in chunks:
            length += len(chunk)
            _check_length(size, length, done=False)
            h.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress(len(chunk))
        _check_length(size, length, done=True)
        if "sha256:" + h.hexdigest() != digest:
            raise DigestMismatch(digest, "sha256:" + h.hexdigest())


def is_local_file(stream: object) -> bool:
    """Whether `stream` is a regular file of this machine (it has a descriptor the kernel can
    copy from, and a caller that opened it by path)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def copy_file_verified(
    src: object,
    out: BinaryIO,
    target: Path,
    digest: str,
    size: int,
    progress: ProgressCallback | None = None,
) -> bool:
    """Copy `size` bytes from the regular file `src` (a binary file object, from its current
    position) into `out`, the open file `target`, inside the kernel (copy_file_range: no byte
    passes through Python), then hash `target` as written. False, with nothing written, when `src`
    is no plain file or the kernel cannot copy between the two (the caller streams instead).

    Why: a Python loop of read, hash and write ran 537 MB in 0.5 to 1.6 s on this machine's ext4
    (the writes of 1 MiB buffers stalled now and then), the kernel copy plus a hash of the result
    in 0.52 s every time, as fast as `cp` + `openssl dgst` (bench/push_pull.py).

    Raises:
        SizeMismatch: `src` holds fewer or more than `size` bytes from its position.
        DigestMismatch: what `target` holds does not hash to `digest`.
    """
    if not hasattr(os, "copy_file_range"):  # Linux only (macOS: the caller streams)
        return False
    if not is_local_file(src):
        return False
    src_fd = src.fileno()  # type: ignore[attr-defined]
    try:
        pos = src.tell()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    out.flush()
    dst_fd = out.fileno()
    start = os.lseek(dst_fd, 0, os.SEEK_CUR)
    copied = 0
    while copied < size:
        try:
            n = os.copy_file_range(src_fd, dst_fd, min(size - copied, COPY_RANGE), pos + copied)
        except OSError as err:
            if copied == 0 and err.errno in _NO_KERNEL_COPY:
                return False
            raise
        if n == 0:
            if copied == 0:  # some filesystems copy nothing in the kernel: the caller streams
                return False
            raise SizeMismatch(size, copied)
        copied += n
        if progress is not None:
            progress(n)
    if os.pread(src_fd, 1, pos + size):
        raise SizeMismatch(size, size + 1)
    with target.open("rb") as written:
        written.seek(start)
        got = "sha256:" + hashlib.file_digest(written, "sha256").hexdigest()
    if got != digest:
        raise DigestMismatch(digest, got)
    return True


COPY_RANGE = 64 * 1024 * 1024
"""Bytes per copy_file_range call: progress moves at least this often."""
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}


def fetch_into_cache(
    store: BlobStore,
    cache: BlobStore,
    digest: str,
    size: int,
    into: Path | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Bring blob `digest` from `store` into the local `cache`, verified. With `into` (a new file)
    each byte is written once: to `into`, hashed on the way (not fsynced: a pull's output, see
    `write_verified`), and the cache takes that file (`adopt`: a hard link, a copy across
    filesystems); a failure leaves neither."""
    if into is None:
        cache.put(IterReader(store.open(digest)), digest, size, progress)
        return
    write_verified(store.open(digest), into, digest, size, progress, durable=False)
    cache.adopt(into, digest, size)


def _check_length(size: int, length: int, done: bool) -> None:
    if length > size or (done and length != size):
        raise SizeMismatch(size, length)


def sha256_file(path: str, progress: ProgressCallback | None = None) -> BlobInfo:
    """Stream a file through sha256 without holding it in memory: read into one reused buffer.
    (A new bytes object per 1 MiB read cost as much as the hashing: 537 MB took 0.44 s of reads
    against 0.05 s into a buffer, page faults on every fresh chunk, bench/push_pull.py's push.)"""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if progress is not None:
                progress(n)
    return BlobInfo("sha256:" + h.hexdigest(), size)
