"""Version manifests: the list of files (path, size, sha256) and its canonical digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    """Blob digest, `sha256:<hex>`."""


def canonical_manifest(files: list[FileEntry]) -> bytes:
    """Sorted by path, sorted keys, no whitespace, UTF-8: one byte string per content."""
    doc = {"files": [asdict(f) for f in sorted(files, key=lambda f: f.path)], "schema": 1}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(files: list[FileEntry]) -> str:
    return "sha256:" + hashlib.sha256(canonical_manifest(files)).hexdigest()


def entries_from_json(items: list[dict[str, Any]]) -> list[FileEntry]:
    return [FileEntry(str(i["path"]), int(i["size"]), str(i["sha256"])) for i in items]
