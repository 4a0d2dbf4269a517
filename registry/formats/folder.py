"""Scan a local adapter folder: select its files (formats/selection.py), hash each (streaming)."""

from __future__ import annotations

from pathlib import Path

from registry.formats.inspect import ReadRange
from registry.formats.manifest import FileEntry
from registry.formats.selection import select_folder
from storage import sha256_file
from storage.base import ProgressCallback


def list_folder(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, absolute path) of every file a version takes from `root` by default
    (formats/selection.py: training artefacts and tool state skipped), refusing selected symlinks."""
    return select_folder(root).files


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
