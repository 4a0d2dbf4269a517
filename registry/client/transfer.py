"""push and pull, written once over the RegistryClient interface."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from registry.client.args import finite_number, name_equals_number
from registry.client.base import RegistryClient, TransferProgress
from registry.entities import EvalScoreIn, FileInfo, PushRequest, PushResult, VersionInfo
from registry.errors import BadRequest, DigestMismatch, OutputExists
from registry.formats.folder import hash_folder, list_folder, local_reader
from registry.formats.inspect import Limits, inspect_files
from registry.formats.manifest import FileEntry
from registry.refs import check_alias, parse_repo

CLIENT_LIMITS = Limits(max_total_bytes=1 << 62, max_header_bytes=100 * 1024**2, max_json_bytes=16 * 1024**2)


class IterReader:
    """A read(n) file object over an iterator of byte chunks (a download or blob stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self._buf += chunk
        if n < 0:
            n = len(self._buf)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


def parse_eval(text: str) -> EvalScoreIn:
    """METRIC=VALUE[@DATASET[:SPLIT]], e.g. accuracy=0.91@mmlu:test."""
    usage = "--eval METRIC=VALUE[@DATASET[:SPLIT]], e.g. accuracy=0.91@mmlu:test"
    metric, rest = name_equals_number(text, usage)
    value_text, _, where = rest.partition("@")
    dataset, _, split = where.partition(":")
    value = finite_number(value_text, text, usage)
    return EvalScoreIn(metric=metric, value=value, dataset=dataset or None, split=split or None)


def upload_missing(
    client: RegistryClient,
    entries: list[FileEntry],
    paths: dict[str, Path],
    progress: TransferProgress | None,
) -> None:
    """Upload, once each, the blobs among `entries` that the registry lacks."""
    missing = set(client.missing_blobs([e.sha256 for e in entries]))
    todo = list({e.sha256: e for e in entries if e.sha256 in missing}.values())
    if progress and todo:
        progress.start("uploading", sum(e.size for e in todo))
    for e in todo:
        client.upload_blob(paths[e.path], e.sha256, e.size, progress)
    if progress and todo:
        progress.finish()


def push_folder(
    client: RegistryClient,
    folder: Path,
    repo: str,
    *,
    base: str | None = None,
    task: str | None = None,
    evals: list[EvalScoreIn] | None = None,
    aliases: list[str] | None = None,
    message: str | None = None,
    lineage: dict[str, Any] | None = None,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> PushResult:
    """Validate locally, upload only the blobs the registry lacks, then commit the manifest."""
    parse_repo(repo)
    for a in aliases or []:
        check_alias(a)
    files = list_folder(folder)
    total = sum(p.stat().st_size for _, p in files)
    if progress:
        progress.start("hashing", total)
    entries = hash_folder(files, progress.advance if progress else None)
    if progress:
        progress.finish()
    inspect_files(entries, local_reader(files), CLIENT_LIMITS)
    upload_missing(client, entries, dict(files), progress)
    request = PushRequest(
        files=[FileInfo(path=e.path, size=e.size, sha256=e.sha256) for e in entries],
        base=base,
        task=task,
        evals=evals or [],
        aliases=aliases or [],
        message=message,
        lineage=lineage,
        force=force,
    )
    return client.commit(repo, request)


def pull(
    client: RegistryClient,
    ref: str,
    out: Path | None = None,
    *,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> tuple[VersionInfo, Path]:
    """Download into the local cache (only what it lacks), verify, and write `out` atomically."""
    info = client.resolve(ref)
    out = out or Path.cwd() / info.repo.split("/")[1]
    write_files(client, info.files, out, force=force, progress=progress)
    return info, out


def fetch_missing(client: RegistryClient, files: list[FileInfo], progress: TransferProgress | None) -> None:
    """Download into the client's local cache the blobs it does not have yet."""
    todo = [f for f in files if client.cache.stat(f.sha256) is None]
    if progress and todo:
        progress.start("downloading", sum(f.size for f in todo))
    for f in todo:
        client.fetch_blob(f.sha256, f.size, progress)
    if progress and todo:
        progress.finish()


def write_files(
    client: RegistryClient,
    files: list[FileInfo],
    out: Path,
    *,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> Path:
    """Download what the local cache lacks, verify, and write the files into `out` atomically."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise OutputExists(f"{out} exists and is not empty; pass --force to replace it", path=str(out))
    fetch_missing(client, files, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.pull-", dir=out.parent))
    try:
        for f in files:
            _copy_verified(client, f, staging)
        _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _copy_verified(client: RegistryClient, f: FileInfo, staging: Path) -> None:
    target = staging / f.path
    if not target.resolve().is_relative_to(staging.resolve()):
        raise BadRequest(f"refusing path {f.path!r} outside the output folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in client.cache.open(f.sha256):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if "sha256:" + h.hexdigest() != f.sha256:
        raise DigestMismatch(f"{f.path}: cached blob does not hash to {f.sha256}", path=f.path)


def _swap_into_place(staging: Path, out: Path) -> None:
    """rename() the finished folder into place; an existing one is moved aside first, then removed."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        try:
            os.replace(staging, out)
        except OSError:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
