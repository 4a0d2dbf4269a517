"""s3:// blob store through the minio SDK (MinIO in production, any S3 endpoint).

An upload streams straight to the blob's content-addressed key, hashed as it goes, in one pass: a
multipart upload is invisible until completed, and the SDK completes it only after reading the
last byte, which is where the verifying reader refuses a wrong digest or length, so the SDK aborts
the upload instead (no object, no parts left). A blob of one part is sent only once read whole
and verified.
"""

from __future__ import annotations

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
)

PART_SIZE = 32 * 1024 * 1024
"""Multipart part size. put_object of a 256 MiB file to moto on loopback (2-core machine, load
average 3) ran at 29 MB/s in the SDK's default 5 MiB parts, 60 MB/s in 16 MiB and 73 MB/s in 64 MiB
parts (one at a time): the per-part round trip dominates small parts. The SDK holds a part twice
while sending it, so 32 MiB parts keep a push's peak RSS near 140 MiB (bench/push_pull.py), under
the 200 MB budget, with most of the gain. (At load average 11 every setting measured 15-26 MB/s:
the figures in the README are each next to the SDK anchor measured in the same run.)"""
PARALLEL_UPLOADS = 1
"""Parts in flight. Two 64 MiB parts did upload faster (100 MB/s) than one, but hold four parts in
memory, over the RSS budget; and with one, when the verifying reader refuses at the end no earlier
part is still in flight, so the SDK's abort leaves nothing behind (a part still uploading when its
upload is aborted may be kept by S3 until aborted again)."""

_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"}


class S3BlobStore:
    def __init__(self, client: Minio, bucket: str, prefix: str = "", part_size: int = PART_SIZE) -> None:
        self.client = client
        self.part_size = part_size
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

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
        reader = VerifyingReader(stream, digest, size, progress)
        if size == 0:
            reader.finish()  # the SDK makes no read for an empty object: verify before sending
        self.client.put_object(
            self.bucket,
            self.key_for(digest),
            cast(BinaryIO, reader),
            length=size,
            part_size=self.part_size,
            num_parallel_uploads=PARALLEL_UPLOADS,
        )
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
        """Abort the multipart uploads under this store's prefix begun more than `older_than_s`
        seconds ago (a process killed mid-upload leaves one behind, invisible but billed), and remove
        temporary keys that the two-pass uploads of older versions left. The SDK has no public call
        to list or abort incomplete uploads (its put_object aborts its own on an error), hence the
        private ones; a bucket lifecycle rule (AbortIncompleteMultipartUpload) does the same."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        removed = 0
        prefix = self._key("sha256") + "/"
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
                started = upload.initiated_time
                if upload.object_name and upload.upload_id and started is not None and started < cutoff:
                    self.client._abort_multipart_upload(self.bucket, upload.object_name, upload.upload_id)
                    removed += 1
            if not listing.is_truncated or not listing.uploads:
                break
            # (the SDK drops NextUploadIdMarker: the page's last entry is the marker)
            key_marker, upload_id_marker = listing.uploads[-1].object_name, listing.uploads[-1].upload_id
        for obj in self.client.list_objects(self.bucket, prefix=self._key("tmp") + "/", recursive=True):
            if obj.object_name and obj.last_modified is not None and obj.last_modified < cutoff:
                self.client.remove_object(self.bucket, obj.object_name)
                removed += 1
        return removed

    def check(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            raise BlobNotFound(f"bucket {self.bucket}")


def _stream(resp: object) -> Iterator[bytes]:
    try:
        yield from resp.stream(CHUNK_SIZE)  # type: ignore[attr-defined]
    finally:
        resp.close()  # type: ignore[attr-defined]
        resp.release_conn()  # type: ignore[attr-defined]
