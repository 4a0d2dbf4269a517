"""The file store's kernel copy (copy_file_range, then a hash of what was written): an embedded
push of a local file and a pull out of a blob directory are verified exactly as the streaming
copy was: a wrong digest or length stores or leaves nothing."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from storage.base import DigestMismatch, SizeMismatch, copy_file_verified
from storage.local import LocalBlobStore


def blob(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def data() -> bytes:
    return os.urandom(3 * 1024 * 1024 + 17)


def leftovers(store: LocalBlobStore) -> list[str]:
    tmp = store.root / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def test_put_of_a_file_is_copied_by_the_kernel_and_verified(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    store = LocalBlobStore(tmp_path / "blobs")
    seen: list[int] = []
    with src.open("rb") as f:
        store.put(f, blob(data), len(data), seen.append)
    assert store.path_for(blob(data)).read_bytes() == data
    assert sum(seen) == len(data) and leftovers(store) == []


def test_the_kernel_copy_is_what_runs_for_a_file(tmp_path: Path, data: bytes) -> None:
    """copy_file_verified answers True for a regular file (the streaming loop is not used) and
    False, having written nothing, for a stream that is no file."""
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    target = tmp_path / "out.bin"
    with src.open("rb") as f, target.open("xb") as out:
        assert copy_file_verified(f, out, target, blob(data), len(data))
    assert target.read_bytes() == data
    other = tmp_path / "other.bin"
    with other.open("xb") as out:
        assert not copy_file_verified(io.BytesIO(data), out, other, blob(data), len(data))
    assert other.stat().st_size == 0


@pytest.mark.parametrize(
    ("content", "declared", "error"),
    [
        (b"x" * 1000, "wrong-digest", DigestMismatch),
        (b"x" * 1000, "short-file", SizeMismatch),  # declared longer than the file
        (b"x" * 1000, "long-file", SizeMismatch),  # the file runs past the declared size
    ],
)
def test_put_of_a_wrong_file_stores_nothing(
    tmp_path: Path, content: bytes, declared: str, error: type[Exception]
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(content)
    store = LocalBlobStore(tmp_path / "blobs")
    digest, size = blob(content), len(content)
    if declared == "wrong-digest":
        digest = blob(content + b"!")
    elif declared == "short-file":
        size += 1
    else:
        digest, size = blob(content[:-1]), size - 1
    with src.open("rb") as f, pytest.raises(error):
        store.put(f, digest, size)
    assert store.stat(digest) is None and leftovers(store) == []


def test_put_from_the_middle_of_a_file_copies_from_its_position(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"HEADER" + data)
    store = LocalBlobStore(tmp_path / "blobs")
    with src.open("rb") as f:
        assert f.read(6) == b"HEADER"  # buffered read-ahead: the fd offset is past the position
        store.put(f, blob(data), len(data))
    assert store.path_for(blob(data)).read_bytes() == data


def test_copy_out_writes_a_verified_file_and_refuses_a_corrupt_blob(tmp_path: Path, data: bytes) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put(io.BytesIO(data), blob(data), len(data))
    out = tmp_path / "pulled.bin"
    store.copy_out(blob(data), out, len(data))
    assert out.read_bytes() == data
    with pytest.raises(FileExistsError):  # a new file only
        store.copy_out(blob(data), out, len(data))
    path = store.path_for(blob(data))
    path.chmod(0o644)
    with path.open("r+b") as f:  # a bit flipped on disk
        f.seek(len(data) // 2)
        byte = f.read(1)
        f.seek(len(data) // 2)
        f.write(bytes([byte[0] ^ 1]))
    bad = tmp_path / "bad.bin"
    with pytest.raises(DigestMismatch):
        store.copy_out(blob(data), bad, len(data))
    assert not bad.exists()
    with pytest.raises(SizeMismatch):
        store.copy_out(blob(data), bad, len(data) + 1)
    assert not bad.exists()


@pytest.mark.parametrize("kernel", ["absent", "copies-nothing"])
def test_without_a_kernel_copy_the_store_streams(
    tmp_path: Path, data: bytes, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No copy_file_range (macOS), or a filesystem on which it copies nothing: put and copy_out
    stream instead, verified the same way."""
    if kernel == "absent":
        monkeypatch.delattr(os, "copy_file_range")
    else:
        monkeypatch.setattr(os, "copy_file_range", lambda *args: 0)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    store = LocalBlobStore(tmp_path / "blobs")
    with src.open("rb") as f:
        store.put(f, blob(data), len(data))
    out = tmp_path / "out.bin"
    store.copy_out(blob(data), out, len(data))
    assert out.read_bytes() == data == store.path_for(blob(data)).read_bytes()
    with src.open("rb") as f, pytest.raises(DigestMismatch):
        store.put(f, blob(data + b"!"), len(data))
    assert leftovers(store) == []
