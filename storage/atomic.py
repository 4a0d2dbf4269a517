"""Files and folders that appear whole or not at all: the one home of temp-file-and-rename.

- `atomic_file`: a temp file in the target's folder (or a given folder on the same filesystem),
  written, fsynced, then renamed over the target (`os.replace`) or linked to it where it must not
  replace another process's file (`exclusive`), and the folder fsynced; the temp is removed in any
  case (huggingface_hub `file_download.py::_download_to_tmp_and_move`).
- `new_file`: a file created under its final name (`open(..., "xb")`) that is removed again if
  anything fails before it is finished: for outputs whose name nobody reads until the writer says
  so (a pull's staged files, a cache entry named by the digest it is checked against).
- `new_folder`/`folder_into_place`/`remove_folder`: a hidden folder beside the target, renamed into
  place once complete; a folder renamed out of the way before it is deleted, so a half-deleted
  folder never sits under its name.
- `symlink_atomic`: a symlink moved to a new target in one rename.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(
    target: Path,
    *,
    tmp_dir: Path | None = None,
    prefix: str | None = None,
    mode: int | None = None,
    exclusive: bool = False,
    fsync_dir: bool = True,
) -> Iterator[BinaryIO]:
    """Yield a binary file to write `target`'s new content into; when the block ends without an
    error the file is flushed, fsynced and renamed over `target` (readers see the old content or
    the new, whole), else dropped.

    Args:
        tmp_dir: where the temp file lives (the target's folder by default): it must be on the same
            filesystem. A store keeps its temps apart so that a sweep of dead uploads finds them.
        prefix: the temp file's name before its random part (`.<target name>.` by default).
        mode: the file's exact permissions (0o600 for a secret: it never exists wider, even for a
            moment, whatever the umask); None: as `open` makes them (0o666 less the umask).
        exclusive: never replace an existing `target` (a hard link instead of a rename): where
            another process made it first, FileExistsError is raised and theirs is kept.
        fsync_dir: also fsync the folder, so the rename itself survives a power loss.
    """
    folder = tmp_dir if tmp_dir is not None else target.parent
    out = _create(folder, prefix if prefix is not None else f".{target.name}.", mode)
    tmp = Path(out.name)  # the caller may read it back by name (storage.base.copy_file_verified)
    try:
        with out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            os.link(tmp, target)
        else:
            os.replace(tmp, target)
        if fsync_dir:
            fsync_folder(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(
    target: Path, data: bytes | str, *, mode: int | None = None, exclusive: bool = False
) -> None:
    """`target` holds `data` (text as UTF-8), written as `atomic_file` writes."""
    with atomic_file(target, mode=mode, exclusive=exclusive) as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def new_file(target: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield `target`, created new (FileExistsError if it exists); flushed and, if `durable`,
    fsynced at the end of the block; removed if the block raises (anything, interrupts too)."""
    try:
        with target.open("xb") as out:
            yield out
            out.flush()
            if durable:
                os.fsync(out.fileno())
    except FileExistsError:
        raise  # not ours: leave it
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def new_folder(parent: Path, prefix: str) -> Path:
    """A new hidden folder `parent/<prefix><random>`. Unlike mkdtemp (mode 0700) it gets the
    umask's mode, which a folder renamed into place keeps."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"cannot create a staging folder in {parent}")


@contextlib.contextmanager
def folder_into_place(
    target: Path, prefix: str | None = None, *, keep_theirs: bool = False
) -> Iterator[Path]:
    """Yield a new, empty hidden folder beside `target`; fill it in the block. When the block ends
    without an error it is renamed to `target` (which must not exist, or be an empty folder);
    whatever is left of it is removed in any case.

    Args:
        prefix: the hidden folder's name before its random part (`.<target name>.` by default).
        keep_theirs: where the rename fails because another process put a folder at `target`
            first, keep theirs and return quietly (content-addressed folders: theirs is the same).
    """
    staging = new_folder(target.parent, prefix if prefix is not None else f".{target.name}.")
    try:
        yield staging
        try:
            os.rename(staging, target)
        except OSError:
            if not (keep_theirs and target.is_dir()):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_folder(path: Path) -> None:
    """Delete the folder `path`: renamed to a hidden name beside it first, then deleted, so a
    half-deleted folder never sits under its name."""
    doomed = path.parent / f".{path.name}.prune-{secrets.token_hex(6)}"
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def symlink_atomic(link: Path, target: str) -> None:
    """Make `link` a symlink to `target` in one rename(2) of a new symlink over it: a reader of
    `link` sees the old target or the new one, never neither."""
    tmp = link.with_name(f".{link.name}.swap-{secrets.token_hex(6)}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    finally:
        if tmp.is_symlink():
            tmp.unlink()


def fsync_folder(path: Path) -> None:
    """fsync a folder: a rename or link in it survives a power loss once this returns."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(folder: Path, prefix: str, mode: int | None) -> BinaryIO:
    """A new file `folder/<prefix><random>.tmp`, open for writing (O_EXCL, never through a
    symlink), with exactly `mode` where one is given."""

    def opener(path: str, flags: int) -> int:
        fd = os.open(path, flags | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666 if mode is None else mode)
        if mode is None:
            return fd
        try:
            os.fchmod(fd, mode)  # whatever the umask took away
        except BaseException:
            os.close(fd)
            raise
        return fd

    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(6)}.tmp"
        try:
            return open(path, "xb", opener=opener)  # noqa: SIM115 - closed by atomic_file
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {folder}")
