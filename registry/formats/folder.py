"""Scan a local adapter folder: refuse symlinks and unsafe names, hash every file (streaming)."""

from __future__ import annotations

import os
from pathlib import Path

from registry.errors import BadRequest, SymlinkRefused
from registry.formats.inspect import ReadRange
from registry.formats.manifest import FileEntry
from registry.formats.paths import normalize_path
from storage import sha256_file
from storage.base import ProgressCallback

IGNORED_DIRS = {".git", "__pycache__", ".ipynb_checkpoints"}


def list_folder(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, absolute path) of every file, refusing symlinks anywhere inside."""
    if not root.is_dir():
        raise BadRequest(f"{root} is not a directory")
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                raise SymlinkRefused(f"{(here / d).relative_to(root)} is a symlink", path=d)
            if d in IGNORED_DIRS:
                dirnames.remove(d)
        for name in filenames:
            full = here / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise SymlinkRefused(f"{rel} is a symlink; copy the file into the folder instead", path=rel)
            if not full.is_file():
                raise BadRequest(f"{rel} is not a regular file", path=rel)
            out.append((normalize_path(rel), full))
    return sorted(out)


def hash_folder(files: list[tuple[str, Path]], progress: ProgressCallback | None = None) -> list[FileEntry]:
    entries = []
    for rel, full in files:
        info = sha256_file(str(full), progress)
        entries.append(FileEntry(rel, info.size, info.digest))
    return entries


def local_reader(files: list[tuple[str, Path]]) -> ReadRange:
    """A ReadRange over local files, for client-side validation."""
    paths = dict(files)

    def read(entry: FileEntry, start: int, length: int) -> bytes:
        with open(paths[entry.path], "rb") as f:
            f.seek(start)
            return f.read(length)

    return read
