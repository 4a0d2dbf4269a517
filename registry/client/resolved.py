"""What a pull needs of the version a reference names, as plain values: what registry.reads
resolves, what the client's RefCache (registry.client.ref_cache) keeps, what `write_files` writes
(registry.client.transfer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredFile:
    """A file of a version as the database lists it (a ManifestFile, registry.client.transfer)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Resolved:
    """What a pull needs of the version a reference names: the files it writes (the version's,
    and an attached model.sig: registry.reads.version_files)."""

    repo: str
    version: int
    digest: str
    files: tuple[StoredFile, ...]
    cached: bool = field(default=False, compare=False)
    """Read from the RefCache, not from the registry just now."""

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.version}"

    @classmethod
    def from_doc(cls, doc: dict[str, Any], cached: bool = False) -> Resolved:
        files = tuple(StoredFile(path=f["path"], size=f["size"], sha256=f["sha256"]) for f in doc["files"])
        return cls(doc["repo"], doc["version"], doc["digest"], files, cached)

    def doc(self) -> dict[str, Any]:
        files = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]
        return {"repo": self.repo, "version": self.version, "digest": self.digest, "files": files}
