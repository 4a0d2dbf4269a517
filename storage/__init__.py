"""Content-addressed blob stores, chosen by URL scheme."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from storage.base import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    DigestMismatch,
    HashingReader,
    InvalidDigest,
    SizeMismatch,
    StorageError,
    StoredBlob,
    UnsupportedScheme,
    check_digest,
    sha256_file,
)

SCHEMES = ("file", "s3")


@dataclass(frozen=True)
class S3Options:
    endpoint: str
    access_key: str | None = None
    secret_key: str | None = None
    region: str | None = None
    secure: bool = True
    part_size: int | None = None
    """Multipart part size of uploads (None: storage.s3.PART_SIZE)."""


def open_store(url: str, s3: S3Options | None = None) -> BlobStore:
    """Open the blob store that `url` names: file:///dir or s3://bucket[/prefix]."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from storage.local import LocalBlobStore

        return LocalBlobStore(parsed.path)
    if parsed.scheme == "s3":
        if s3 is None:
            raise UnsupportedScheme("s3:// needs an endpoint: set ADAPTERS_S3_ENDPOINT")
        from minio import Minio

        from storage.s3 import S3BlobStore

        client = Minio(
            s3.endpoint,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
            secure=s3.secure,
        )
        if s3.part_size is None:
            return S3BlobStore(client, parsed.netloc, parsed.path)
        return S3BlobStore(client, parsed.netloc, parsed.path, part_size=s3.part_size)
    raise UnsupportedScheme(
        f"unsupported blob store URL {url!r}; known schemes: " + ", ".join(f"{s}://" for s in SCHEMES)
    )


__all__ = [
    "SCHEMES",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "DigestMismatch",
    "HashingReader",
    "InvalidDigest",
    "S3Options",
    "SizeMismatch",
    "StorageError",
    "StoredBlob",
    "UnsupportedScheme",
    "check_digest",
    "open_store",
    "sha256_file",
]
