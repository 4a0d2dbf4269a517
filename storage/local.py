"""file:// blob store: one file per blob under sha256/<2 hex>/<hex>, written atomically."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path

from storage.atomic import atomic_file, fsync_folder, new_file
from storage.base import (
    CHUNK_SIZE,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    HashingReader,
    ProgressCallback,
    Readable,
    SizeMismatch,
    StoredBlob,
    copy_file_verified,
    digest_hex,
    write_verified,
)


class LocalBlobStore:
    """Blobs in a local directory. Temp file + fsync + rename, so readers never see a partial blob."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = "file://" + str(self.root)
        self._tmp = self.root / "tmp"

    def path_for(self, digest: str) -> Path:
        hexd = digest_hex(digest)
        return self.root / "sha256" / hexd[:2] / hexd

    def stat(self, digest: str) -> BlobInfo | None:
        try:
            return BlobInfo(digest, self.path_for(digest).stat().st_size)
        except FileNotFoundError:
            return None

    def put(
        self,
        stream: Readable,
        digest: str,
        size: int,
        progress: ProgressCallback | None = None,
    ) -> BlobInfo:
        final = self.path_for(digest)
        self._tmp.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        reader = HashingReader(stream, progress)
        # 0600 and `upload-` as mkstemp made them before storage.atomic (`remove_stale_uploads`
        # sweeps whatever is in tmp/, whatever its name).
        with atomic_file(final, tmp_dir=self._tmp, prefix="upload-", mode=0o600) as out:
            # A local file (an embedded push) is copied by the kernel, then hashed as written.
            if not copy_file_verified(stream, out, Path(out.name), digest, size, progress):
                # Read one byte past the declared size so an over-long stream is caught.
                while chunk := reader.read(min(CHUNK_SIZE, size + 1 - reader.length) or 1):
                    out.write(chunk)
                    if reader.length > size:
                        break
                reader.verify(digest, size)
        return BlobInfo(digest, size)

    def adopt(self, path: Path, digest: str, size: int, progress: ProgressCallback | None = None) -> BlobInfo:
        """Take a finished local file, already hashed by the caller, as a blob without copying it:
        a hard link renamed into place (a copy through `put` when `path` is on another
        filesystem). The file must not change afterwards: it is the blob."""
        final = self.path_for(digest)
        if final.exists():
            if progress is not None:
                progress(size)
            return BlobInfo(digest, final.stat().st_size)
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp_name = self._tmp / f"adopt-{os.getpid()}-{digest_hex(digest)[:16]}"
        try:
            os.link(path, tmp_name)
        except OSError:
            with path.open("rb") as f:
                return self.put(f, digest, size, progress)
        try:
            if tmp_name.stat().st_size != size:
                raise SizeMismatch(size, tmp_name.stat().st_size)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            fsync_folder(final.parent)
        finally:
            tmp_name.unlink(missing_ok=True)
        if progress is not None:
            progress(size)
        return BlobInfo(digest, size)

    def open(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self.path_for(digest)
        try:
            f = path.open("rb")
        except FileNotFoundError as err:
            raise BlobNotFound(digest) from err
        return _read_range(f, start, end)

    def copy_out(self, digest: str, target: Path, size: int) -> None:
        """Write blob `digest` to the new file `target`, verified (a pull's output: not fsynced,
        see `write_verified`); the kernel copies it where it can (`copy_file_range`). On any
        failure `target` is removed.

        Raises:
            BlobNotFound; DigestMismatch, SizeMismatch: the stored blob is not (digest, size).
        """
        try:
            src = self.path_for(digest).open("rb")
        except FileNotFoundError as err:
            raise BlobNotFound(digest) from err
        with src:
            with new_file(target, durable=False) as out:
                copied = copy_file_verified(src, out, target, digest, size)
            if not copied:
                target.unlink()
                write_verified(_read_range(src, 0, None), target, digest, size, durable=False)

    def url_for(self, digest: str, expires_s: int = 3600) -> str | None:
        return None

    def delete(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)

    def iter_blobs(self) -> Iterator[StoredBlob]:
        for shard in _scan(self.root / "sha256"):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in _scan(Path(shard.path)):
                if not entry.name.startswith(shard.name) or len(entry.name) != 64:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted meanwhile
                yield StoredBlob("sha256:" + entry.name, st.st_size, st.st_mtime)

    def remove_stale_uploads(self, older_than_s: float) -> int:
        removed = 0
        cutoff = time.time() - older_than_s
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # finished or removed by another process meanwhile
        return removed

    def under(self, prefix: str) -> LocalBlobStore:
        return LocalBlobStore(self.root / _prefix(prefix))

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(f"blob directory {self.root} is not writable")


def local_cache(store: BlobStore, cache_dir: str | os.PathLike[str]) -> LocalBlobStore:
    """Where a process keeps the blobs it reads: a local blob directory is its own cache (pulls
    copy or link straight out of it); any other store gets a local cache at `cache_dir`."""
    return store if isinstance(store, LocalBlobStore) else LocalBlobStore(cache_dir)


def link_or_copy(src: Path, dst: Path, digest: str, size: int) -> None:
    """Give the finished file `src`, blob (digest, size), a second name `dst` (a new path): a hard
    link, or where they are on different filesystems (EXDEV) or links are refused, a copy hashed
    as it is written, fsynced and verified (`write_verified`: nothing is left at `dst` if it fails)."""
    try:
        os.link(src, dst)
    except OSError:
        write_verified(_read_range(src.open("rb"), 0, None), dst, digest, size)


def _read_range(f: BufferedReader, start: int, end: int | None) -> Iterator[bytes]:
    with f:
        f.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            chunk = f.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _prefix(prefix: str) -> str:
    """A prefix of plain names that is neither `sha256` nor `tmp` (this store's own folders)."""
    parts = prefix.strip("/").split("/")
    if not all(p and p not in (".", "..") for p in parts) or parts[0] in ("sha256", "tmp"):
        raise ValueError(f"{prefix!r} is not a separate key prefix")
    return "/".join(parts)


def _scan(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []
