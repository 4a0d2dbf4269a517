"""storage.atomic: a file or folder appears whole or not at all, and nothing is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.atomic import (
    atomic_file,
    folder_into_place,
    new_file,
    remove_folder,
    symlink_atomic,
    write_atomic,
)


def test_atomic_file_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with atomic_file(target) as out:
        out.write(b"new")
        assert target.read_text() == "old"  # readers see the old content until the end
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_file_failure_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as out:
        out.write(b"half")
        raise RuntimeError("cut")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_exclusive_keeps_theirs_and_mode_is_exact(tmp_path: Path) -> None:
    key = tmp_path / "key"
    old = os.umask(0o077)
    try:
        write_atomic(key, b"mine", mode=0o600, exclusive=True)
    finally:
        os.umask(old)
    assert key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_atomic(key, b"other", mode=0o600, exclusive=True)
    assert key.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_new_file_is_removed_on_failure_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    with pytest.raises(ValueError), new_file(target) as out:
        out.write(b"x")
        raise ValueError("bad digest")
    assert not target.exists()
    target.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError), new_file(target):
        pass
    assert target.read_bytes() == b"someone else's"


def test_folder_into_place(tmp_path: Path) -> None:
    final = tmp_path / "v1"
    with pytest.raises(RuntimeError), folder_into_place(final) as staging:
        (staging / "a").write_text("a")
        raise RuntimeError("cut")
    assert list(tmp_path.iterdir()) == []
    with folder_into_place(final) as staging:
        (staging / "a").write_text("a")
    assert [p.name for p in tmp_path.iterdir()] == ["v1"] and (final / "a").read_text() == "a"
    with folder_into_place(final, keep_theirs=True) as staging:  # someone else's is already there
        (staging / "b").write_text("b")
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    with pytest.raises(OSError), folder_into_place(final) as staging:
        (staging / "b").write_text("b")
    remove_folder(final)
    assert list(tmp_path.iterdir()) == []


def test_symlink_atomic(tmp_path: Path) -> None:
    link = tmp_path / "name"
    symlink_atomic(link, "one")
    symlink_atomic(link, "two")
    assert os.readlink(link) == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["name"]
