"""s3:// blob store through the minio SDK (MinIO in production, any S3 endpoint).

Uploads go to a temporary key first and are copied server-side to the content-addressed key only
after the streamed sha256 and length match, so a wrong or partial upload is never visible.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, cast

from minio import Minio
from minio.commonconfig import ComposeSource
from minio.error import S3Error

from storage.base import (
    CHUNK_SIZE,
    BlobInfo,
    BlobNotFound,
    HashingReader,
    ProgressCallback,
    Readable,
    SizeMismatch,
    StoredBlob,
    digest_hex,
)

_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"}


class S3BlobStore:
    def __init__(self, client: Minio, bucket: str, prefix: str = "") -> None:
        self.client = client
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
        final_key = self.key_for(digest)
        tmp_key = self._key("tmp", f"{uuid.uuid4().hex}-{digest_hex(digest)[:12]}")
        reader = HashingReader(stream, progress)
        try:
            try:
                # Known length: minio picks the part size (5 MiB up, more for huge blobs) and holds
                # about one part in memory. Sequential parts: HashingReader must see bytes in order.
                self.client.put_object(
                    self.bucket, tmp_key, cast(BinaryIO, reader), length=size, num_parallel_uploads=1
                )
            except OSError as err:
                if "not enough data" not in str(err):
                    raise
                raise SizeMismatch(size, reader.length) from err
            if stream.read(1):
                raise SizeMismatch(size, reader.length + 1)
            reader.verify(digest, size)
            self.client.compose_object(self.bucket, final_key, [ComposeSource(self.bucket, tmp_key)])
        finally:
            self.client.remove_object(self.bucket, tmp_key)
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
        """Temporary keys of uploads killed before their `finally` ran. (Incomplete multipart
        uploads of such a key are best left to a bucket lifecycle rule, AbortIncompleteMultipartUpload.)"""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        removed = 0
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
