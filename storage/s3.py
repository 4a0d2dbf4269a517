"""s3:// blob store through the minio SDK (MinIO in production, any S3 endpoint).

An upload streams straight to the blob's content-addressed key, hashed as it goes, in one pass: a
multipart upload is invisible until completed, and the SDK completes it only after reading the
last byte, which is where the verifying reader refuses a wrong digest or length, so the SDK aborts
the upload instead (no object, no parts left). A blob of one part is sent only once read whole
and verified.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, cast

from minio import Minio
from minio.error import S3Error

from storage.base import (
    CHUNK_SIZE,
    BlobInfo,
    BlobNotFound,
    ProgressCallback,
    Readable,
    StoredBlob,
    VerifyingReader,
    digest_hex,
    is_local_file,
)

PART_SIZE = 32 * 1024 * 1024
"""Multipart part size. put_object of a 256 MiB file to moto on loopback (2-core machine, load
average 3) ran at 29 MB/s in the SDK's default 5 MiB parts, 60 MB/s in 16 MiB and 73 MB/s in 64 MiB
parts (one at a time): the per-part round trip dominates small parts. The SDK holds a part twice
while sending it, so 32 MiB parts keep a push's peak RSS near 140 MiB (bench/push_pull.py), under
the 200 MB budget, with most of the gain. (At load average 11 every setting measured 15-26 MB/s:
the figures in the README are each next to the SDK anchor measured in the same run.)"""
PARALLEL_UPLOADS = 1
"""Parts in flight for a body that arrives (a server's upload, any stream). Two 64 MiB parts did
upload faster (100 MB/s) than one, but hold four parts in memory, over the RSS budget; and with
one, when the verifying reader refuses at the end no earlier part is still in flight, so the SDK's
abort leaves nothing behind (a part still uploading when its upload is aborted may be kept by S3
until aborted again). Worse, minio 7.2 aborts a refused parallel upload without stopping its part
threads: the parts in flight are sent after the abort, and the pool's threads wait for work
forever, so every refused upload would leak them (found in review, probed on moto)."""
FILE_PARALLEL_UPLOADS = 2
"""Parts in flight for a local file (an embedded push, a worker's output): the caller hashed it
just before, so the reader refuses only if the file changed meanwhile, and that rare refusal's
cost above (two idle threads for the life of the process; parts S3 may keep) is bounded. Its parts
are half `part_size`, so the memory in flight stays near one part's. 512 MiB to moto on loopback,
two rounds at load average 2: 16 MiB x 2 ran at 129 and 84 MB/s, 32 MiB x 1 at 70 and 63, 8 MiB x
3 at 118 and 60, and the SDK's fput_object (5 MiB x 3) at 100 and 103 in the same rounds. In
bench/push_pull.py a push of 512 MiB went from 45-57 to 63-75 MB/s (two in flight); three in flight
measured no better (74 and 80)."""
SMALL_PART_SIZE = 5 * 1024 * 1024
"""S3's smallest part, which the two-pass uploads of older versions used (the SDK's default). One
upload per store at a time gets `part_size` parts; the others meanwhile (a server's concurrent
uploads) get these, so a server's peak stays 2 x (part_size + (N - 1) x 5 MiB) for N uploads at
once (16: 214 MiB, against 160 MiB with 5 MiB parts only, and 1 GiB were every upload given 32
MiB parts), while a CLI push, one blob at a time, always gets the fast parts."""
MAX_PARTS = 10_000
"""S3's (and the SDK's) most parts in one upload: a blob over MAX_PARTS x part_size gets bigger
parts (a 1 TB blob: 100 MiB parts, held twice)."""
MULTIPART_STALE_S = 24 * 3600.0
"""The least age at which the stale-upload sweep aborts a multipart upload: it cannot tell a dead
upload from a live one, and a multi-GB upload (or one held back by a slow client) can run for
hours; the sweep runs at every server start, so a restarting replica must not kill a long upload
another replica is still sending. Temporary keys (left by older versions) go after `stale_upload_s`."""

_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"}


class S3BlobStore:
    def __init__(self, client: Minio, bucket: str, prefix: str = "", part_size: int = PART_SIZE) -> None:
        self.client = client
        self.part_size = part_size
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._big_parts = threading.Lock()
        """Held by the one upload that gets `part_size` parts (see SMALL_PART_SIZE)."""

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def key_for(self, digest: str) -> str:
        hexd = digest_hex(digest)
        return self._key("sha256", hexd[:2], hexd)

    def stat(self, digest: str) -> BlobInfo | None:
        try:
            st = self.client.stat_object(self.bucket, self.key_for(digest))
        except S3Error as err:
            if err.code in _MISSING_CODES:
                return None
            raise
        return BlobInfo(digest, int(st.size or 0))

    def put(
        self,
        stream: Readable,
        digest: str,
        size: int,
        progress: ProgressCallback | None = None,
    ) -> BlobInfo:
        """Stream to the final key, verified (see the module). An upload stopped by a
        BaseException that is not an Exception (KeyboardInterrupt on Ctrl-C, SystemExit from a
        SIGTERM handler), which the SDK does not abort, is aborted here: the multipart uploads of
        this key that were not pending before this call began (a concurrent upload of the very
        same blob by another process, started meanwhile, is aborted too: its push fails and is
        retried); knowing which costs one listing request per multipart upload. A process killed
        outright (SIGKILL) leaves its upload to the stale sweep."""
        reader = VerifyingReader(stream, digest, size, progress)
        if size == 0:
            reader.finish()  # the SDK makes no read for an empty object: verify before sending
        key = self.key_for(digest)
        big = self._big_parts.acquire(blocking=False)
        try:
            parallel = FILE_PARALLEL_UPLOADS if big and is_local_file(stream) else PARALLEL_UPLOADS
            fast = max(SMALL_PART_SIZE, self.part_size // parallel)
            part_size = part_size_for(size, fast if big else min(self.part_size, SMALL_PART_SIZE))
            before = set(self._pending_uploads(key)) if size > part_size else set()
            try:
                self.client.put_object(
                    self.bucket,
                    key,
                    cast(BinaryIO, reader),
                    length=size,
                    part_size=part_size,
                    num_parallel_uploads=parallel,
                )
            except Exception:
                raise  # the SDK has aborted its upload
            except BaseException:
                if size > part_size:
                    # Best effort: the interrupt goes on whatever happens here (the sweep is the net).
                    with contextlib.suppress(Exception):
                        for upload_key, upload_id in self._pending_uploads(key):
                            if upload_key == key and (upload_key, upload_id) not in before:
                                self.client._abort_multipart_upload(self.bucket, upload_key, upload_id)
                raise
        finally:
            if big:
                self._big_parts.release()
        return BlobInfo(digest, size)

    def adopt(self, path: Path, digest: str, size: int, progress: ProgressCallback | None = None) -> BlobInfo:
        """Upload a finished local file (S3 cannot link it): verified as `put`, skipped if present."""
        existing = self.stat(digest)
        if existing is not None and existing.size == size:
            if progress is not None:
                progress(size)
            return existing
        with path.open("rb") as f:
            return self.put(f, digest, size, progress)

    def open(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        length = 0 if end is None else max(0, end - start)
        if end is not None and length == 0:
            return iter(())
        try:
            resp = self.client.get_object(self.bucket, self.key_for(digest), offset=start, length=length)
        except S3Error as err:
            if err.code in _MISSING_CODES:
                raise BlobNotFound(digest) from err
            raise
        return _stream(resp)

    def url_for(self, digest: str, expires_s: int = 3600) -> str | None:
        return self.client.presigned_get_object(
            self.bucket, self.key_for(digest), expires=timedelta(seconds=expires_s)
        )

    def delete(self, digest: str) -> None:
        self.client.remove_object(self.bucket, self.key_for(digest))

    def iter_blobs(self) -> Iterator[StoredBlob]:
        prefix = self._key("sha256") + "/"
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            name = obj.object_name or ""
            hexd = name.rsplit("/", 1)[-1]
            if len(hexd) != 64 or obj.last_modified is None:
                continue
            yield StoredBlob("sha256:" + hexd, int(obj.size or 0), obj.last_modified.timestamp())

    def remove_stale_uploads(self, older_than_s: float) -> int:
        """Abort the multipart uploads under this store's prefix begun more than
        max(`older_than_s`, MULTIPART_STALE_S) seconds ago (a process killed mid-upload leaves one
        behind, invisible but billed; a younger one may still be sending, see MULTIPART_STALE_S),
        and remove the temporary keys that the two-pass uploads of older versions left, untouched
        for `older_than_s`. The SDK has no public call to list or abort incomplete uploads (its
        put_object aborts its own on an error), hence the private ones (minio is pinned below 8 in
        pyproject.toml for them); a bucket lifecycle rule (AbortIncompleteMultipartUpload) does
        the same."""
        now = datetime.now(UTC)
        multipart_cutoff = now - timedelta(seconds=max(older_than_s, MULTIPART_STALE_S))
        removed = 0
        for key, upload_id, started in self._pending_uploads_dated(self._key("sha256") + "/"):
            if started is not None and started < multipart_cutoff:
                self.client._abort_multipart_upload(self.bucket, key, upload_id)
                removed += 1
        cutoff = now - timedelta(seconds=older_than_s)
        for obj in self.client.list_objects(self.bucket, prefix=self._key("tmp") + "/", recursive=True):
            if obj.object_name and obj.last_modified is not None and obj.last_modified < cutoff:
                self.client.remove_object(self.bucket, obj.object_name)
                removed += 1
        return removed

    def _pending_uploads(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, upload id) of every incomplete multipart upload whose key starts with `prefix`."""
        for key, upload_id, _ in self._pending_uploads_dated(prefix):
            yield key, upload_id

    def _pending_uploads_dated(self, prefix: str) -> Iterator[tuple[str, str, datetime | None]]:
        key_marker: str | None = None
        upload_id_marker: str | None = None
        while True:
            listing = self.client._list_multipart_uploads(
                self.bucket,
                prefix=prefix,
                max_uploads=1000,
                key_marker=key_marker,
                upload_id_marker=upload_id_marker,
            )
            for upload in listing.uploads:
                if upload.object_name and upload.upload_id:
                    yield upload.object_name, upload.upload_id, upload.initiated_time
            if not listing.is_truncated or not listing.uploads:
                return
            # (the SDK drops NextUploadIdMarker: the page's last entry is the marker)
            key_marker, upload_id_marker = listing.uploads[-1].object_name, listing.uploads[-1].upload_id

    def under(self, prefix: str) -> S3BlobStore:
        parts = prefix.strip("/").split("/")
        if not all(p and p not in (".", "..") for p in parts) or parts[0] in ("sha256", "tmp"):
            raise ValueError(f"{prefix!r} is not a separate key prefix")
        return S3BlobStore(self.client, self.bucket, self._key(*parts), self.part_size)

    def check(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            raise BlobNotFound(f"bucket {self.bucket}")


def part_size_for(size: int, part_size: int) -> int:
    """`part_size`, raised where a blob of `size` bytes would need more than MAX_PARTS parts."""
    return max(part_size, math.ceil(size / MAX_PARTS))


def _stream(resp: object) -> Iterator[bytes]:
    try:
        yield from resp.stream(CHUNK_SIZE)  # type: ignore[attr-defined]
    finally:
        resp.close()  # type: ignore[attr-defined]
        resp.release_conn()  # type: ignore[attr-defined]
