"""push and pull, written once over the RegistryClient interface."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from registry.bounds import MAX_HEADER_BYTES
from registry.errors import (
    BadRequest,
    DigestMismatch,
    OutputExists,
    UnsafePath,
    from_storage_error,
    store_errors,
)
from registry.formats.inspect import Limits
from registry.observability import events
from registry.refs import check_alias, parse_repo
from storage.atomic import folder_into_place, new_folder
from storage.base import DigestMismatch as StoreDigestMismatch
from storage.base import SizeMismatch as StoreSizeMismatch
from storage.base import fetch_into_cache, write_verified
from storage.local import LocalBlobStore

if TYPE_CHECKING:
    from registry.client.interface import RegistryClient, TransferProgress
    from registry.entities import EvalScoreIn, FileInfo, PushResult, VersionInfo
    from registry.formats.manifest import FileEntry
    from registry.formats.selection import Rules
    from storage import BlobStore

# The entities (pydantic) and the push-side format checks are imported where push needs them:
# a pull of the embedded registry on a bare sqlite3 connection (registry.client.reads) writes its
# files through `write_files` without them.


class ManifestFile(Protocol):
    """A file of a version as `write_files` needs it (registry.entities.FileInfo is one)."""

    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class BlobSource(Protocol):
    """What `write_files` needs of a client: its local cache, and a way to fetch what the cache
    lacks. `cache_is_store`: the cache is the registry's own blob directory (embedded, file
    store), so a blob there that hashes wrong is the registry's, not a stale cache entry."""

    @property
    def cache(self) -> BlobStore: ...
    @property
    def cache_is_store(self) -> bool: ...
    def fetch_blob(
        self, digest: str, size: int, progress: TransferProgress | None, into: Path | None = None
    ) -> None: ...


class StoreBlobs:
    """A BlobSource over the registry's blob store and a local cache, with no permission check of
    its own: `adapters pull` on the embedded registry's bare path (registry.client.reads), which
    reads as the operator, who may read every blob; and LocalClient's fetch_blob once it has
    checked its principal's."""

    def __init__(self, store: BlobStore, cache: BlobStore) -> None:
        self.store = store
        self.cache = cache

    @property
    def cache_is_store(self) -> bool:
        return self.cache is self.store

    def fetch_blob(
        self, digest: str, size: int, progress: TransferProgress | None, into: Path | None = None
    ) -> None:
        """storage.base.fetch_into_cache (verified; with `into`, written once), its errors in the
        registry's vocabulary."""
        try:
            fetch_into_cache(
                self.store, self.cache, digest, size, into, progress.advance if progress else None
            )
        except store_errors() as err:
            raise from_storage_error(err) from err


CLIENT_LIMITS = Limits(
    max_total_bytes=1 << 62, max_header_bytes=MAX_HEADER_BYTES, max_json_bytes=16 * 1024**2
)


def parse_eval(text: str) -> EvalScoreIn:
    """METRIC=VALUE[@DATASET[:SPLIT]], e.g. accuracy=0.91@mmlu:test."""
    from registry.client.args import finite_number, name_equals_number
    from registry.entities import EvalScoreIn

    usage = "--eval METRIC=VALUE[@DATASET[:SPLIT]], e.g. accuracy=0.91@mmlu:test"
    metric, rest = name_equals_number(text, usage)
    value_text, at, where = rest.partition("@")
    dataset, colon, split = where.partition(":")
    value = finite_number(value_text, text, usage)
    # Checked here as EvalScoreIn would (no empty name after '@' or ':', no second '@' or ':'),
    # so that a typo is one clear line, not a silently dropped dataset.
    if (at and not dataset) or (colon and not split) or "@" in where or ":" in split:
        raise BadRequest(
            f"{text!r}: dataset and split names are not empty and hold no '@' or ':'; use {usage}"
        )
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
    rules: Rules | None = None,
    signer_key: str | None = None,
) -> PushResult:
    """Select the folder's files (formats/selection.py: training artefacts skipped, `rules` to
    change that), validate them locally, upload only the blobs the registry lacks, then commit the
    manifest. The result lists what was skipped. A model.sig among the files is checked here as the
    server will check it (with `signer_key`, the PEM key that signed it, if given)."""
    from registry.entities import FileInfo, PushRequest, SkippedPath
    from registry.formats.folder import hash_folder, local_reader
    from registry.formats.inspect import inspect_files
    from registry.formats.selection import select_folder

    parse_repo(repo)
    for a in aliases or []:
        check_alias(a)
    selection = select_folder(folder, rules)
    files = selection.files
    total = sum(p.stat().st_size for _, p in files)
    if progress:
        progress.start("hashing", total)
    entries = hash_folder(files, progress.advance if progress else None)
    if progress:
        progress.finish()
    inspect_files(entries, local_reader(files), CLIENT_LIMITS)
    _check_signature_locally(entries, dict(files), signer_key)
    request = PushRequest(  # built (and so validated) before a byte is uploaded
        files=[FileInfo.model_validate(e) for e in entries],
        base=base,
        task=task,
        evals=evals or [],
        aliases=aliases or [],
        message=message,
        lineage=lineage,
        force=force,
        signer_key=signer_key,
    )
    upload_missing(client, entries, dict(files), progress)
    result = client.commit(repo, request)
    return result.model_copy(
        update={
            "skipped": [SkippedPath(path=s.path, reason=s.reason, files=s.files) for s in selection.skipped],
            "borrowed": selection.borrowed,
        }
    )


def _check_signature_locally(
    entries: list[FileEntry], paths: dict[str, Path], signer_key: str | None
) -> None:
    """A signature that does not match the files is refused before a byte is uploaded."""
    from registry.formats.signing import SIGNATURE_NAME, check_pushed

    if SIGNATURE_NAME in paths:
        check_pushed(paths[SIGNATURE_NAME].read_bytes(), entries, signer_key)


def push_checkpoints(
    client: RegistryClient,
    folder: Path,
    repo: str,
    *,
    aliases: list[str] | None = None,
    evals: list[EvalScoreIn] | None = None,
    message: str | None = None,
    **options: Any,
) -> list[PushResult]:
    """Push each `checkpoint-N` folder of a Trainer output_dir as a version of `repo`, in step
    order, its step in the version's message (and in its training facts, from its
    trainer_state.json). Aliases and --eval scores go to the last checkpoint only. `options` are
    `push_folder`'s.

    Raises:
        BadRequest: `folder` holds no checkpoint-N folder.
    """
    from registry.formats.selection import checkpoint_folders

    found = checkpoint_folders(folder)
    if not found:
        raise BadRequest(
            f"{folder} holds no checkpoint-N folder; push it without --all-checkpoints", path=str(folder)
        )
    results = []
    for i, (step, checkpoint) in enumerate(found):
        last = i == len(found) - 1
        text = f"{checkpoint.name} (step {step})"
        results.append(
            push_folder(
                client,
                checkpoint,
                repo,
                aliases=aliases if last else None,
                evals=evals if last else None,
                message=f"{message}\n\n{text}" if message else text,
                **options,
            )
        )
    return results


def pull(
    client: RegistryClient,
    ref: str,
    out: Path | None = None,
    *,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> tuple[VersionInfo, Path]:
    """Download into the local cache (only what it lacks), verify, and write the files into `out`
    (see `write_files`); returns the version and the absolute folder written."""
    info = client.resolve(ref)
    out = out or Path.cwd() / info.repo.split("/")[1]
    return info, write_files(client, served_files(info), out, force=force, progress=progress)


def served_files(info: VersionInfo) -> list[FileInfo]:
    """The version's files, and its newest attached signature as model.sig when it has none of its
    own (`adapters sign`): a pulled folder then passes `model_signing verify`."""
    from registry.entities import FileInfo
    from registry.formats.signing import SIGNATURE_NAME

    files = list(info.files)
    if any(f.path == SIGNATURE_NAME for f in files):
        return files
    attached = [s for s in info.signatures if s.attached and s.purpose == "signature" and s.digest]
    if attached:
        sig = attached[-1]
        files.append(FileInfo(path=SIGNATURE_NAME, size=sig.size or 0, sha256=sig.digest or ""))
    return files


def fetch_missing(
    client: BlobSource, files: Sequence[ManifestFile], progress: TransferProgress | None
) -> None:
    """Download into the client's local cache the blobs it does not hold whole and right: what
    calls this (a worker) then uses the entries in place, without copying them out (see
    `_cached_right`)."""
    todo = [f for f in files if not _cached_right(client, f)]
    _count_cache(client, len(files), len(todo))
    if progress and todo:
        progress.start("downloading", sum(f.size for f in todo))
    for f in todo:
        client.fetch_blob(f.sha256, f.size, progress)
    if progress and todo:
        progress.finish()


def _count_cache(client: BlobSource, lookups: int, misses: int) -> None:
    """The local blob cache's hits and misses, for a worker's /metrics (counted nowhere else), where
    the cache is one: not on a file store, which is its own cache."""
    if client.cache_is_store:
        return
    sink = events.sink()
    sink.cache("blob", "hit", lookups - misses)
    sink.cache("blob", "miss", misses)


def _cached_right(client: BlobSource, f: ManifestFile) -> bool:
    """Whether the cache holds `f` with its size and digest; a wrong entry is dropped. A cache
    entry may be a pulled file (the cache takes a pull's output by hard link): edited in place
    since, or cut short by a power loss (a pull's output is not fsynced), so it is hashed here,
    as a pull hashes what it copies out. The registry's own blob directory (embedded, file store)
    was verified and fsynced when written: its size is checked."""
    held = client.cache.stat(f.sha256)
    if held is None:
        return False
    if client.cache_is_store:
        return held.size == f.size
    if held.size == f.size:
        h = hashlib.sha256()
        for chunk in client.cache.open(f.sha256):
            h.update(chunk)
        if "sha256:" + h.hexdigest() == f.sha256:
            return True
    client.cache.delete(f.sha256)
    return False


def write_files(
    client: BlobSource,
    files: Sequence[ManifestFile],
    out: Path,
    *,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> Path:
    """Write the files into `out`, each verified: a blob the local cache holds is copied out of it,
    any other is downloaded straight into the staging folder and the cache takes that file (each
    byte written once; see `_stage`).

    Never deletes what the registry did not write. A new folder appears whole: it is staged beside
    `out` and renamed into place. Into an existing folder (a non-empty one needs `force`) every file
    is staged and verified in a hidden folder inside it, then os.replace()d into place one by one;
    every other file there is left alone. A manifest path whose target is a folder, or that would
    pass through a symlink or a file, is refused before anything is written. Returns `out`, absolute.
    The files are not fsynced (as `cp` or a git checkout): "whole" holds for other processes, not
    across a power loss, which can leave a file short or empty.
    """
    if out.is_symlink() and not out.exists():
        raise OutputExists(f"{out} is a symlink to nothing; remove it or pick another folder", path=str(out))
    out = out.expanduser().resolve()  # "." and relative paths, and a symlinked folder: the real one
    paths = [_manifest_path(f.path) for f in files]
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with folder_into_place(out, f".{out.name}.pull-") as staging:
            _stage(client, files, staging, progress)
        return out
    if not out.is_dir():
        raise OutputExists(f"{out} exists and is not a folder", path=str(out))
    if not force and any(out.iterdir()):
        raise OutputExists(
            f"{out} exists and is not empty; pass --force to write the files into it "
            "(files of the same name are replaced, every other file is kept)",
            path=str(out),
        )
    for rel in paths:
        _check_target(out, rel)
    _write_in_place(client, files, paths, out, progress)
    return out


def _stage(
    client: BlobSource, files: Sequence[ManifestFile], staging: Path, progress: TransferProgress | None
) -> None:
    """Write every file into `staging`, verified. A blob the cache lacks is downloaded straight to
    its place there (hashed on the way), and the cache takes that very file by hard link: one write
    per byte, where downloading into the cache and copying out wrote and hashed everything twice
    (bench/push_pull.py). A blob the cache holds is copied out of it, hashed as it is copied."""
    todo = {f.sha256: f.size for f in files if client.cache.stat(f.sha256) is None}
    _count_cache(client, len({f.sha256 for f in files}), len(todo))
    if progress and todo:
        progress.start("downloading", sum(todo.values()))
    for f in files:
        target = _staged_path(f, staging)
        if f.sha256 in todo and client.cache.stat(f.sha256) is None:
            client.fetch_blob(f.sha256, f.size, progress, into=target)
        else:
            _copy_verified(client, f, target)
    if progress and todo:
        progress.finish()


def _manifest_path(path: str) -> PurePosixPath:
    """A manifest path as a plain relative path inside the output folder: no absolute path,
    backslash, NUL, '..', '.' or empty component. (Only what writing safely needs: a version pushed
    under an older, looser push rule still pulls.)"""
    if not path or "\\" in path or "\0" in path or any(p in ("", ".", "..") for p in path.split("/")):
        raise UnsafePath(
            f"refusing path {path!r}: not a plain relative path inside the output folder", path=path
        )
    return PurePosixPath(path)


def _check_target(out: Path, rel: PurePosixPath) -> None:
    """Refuse to write `rel` under `out` through a symlink or a file, or over a folder."""
    cur = out
    for part in rel.parts[:-1]:
        cur = cur / part
        if cur.is_symlink():
            raise BadRequest(f"refusing to write {rel}: {cur} is a symlink", path=str(rel))
        if cur.exists() and not cur.is_dir():
            raise OutputExists(f"cannot write {rel}: {cur} exists and is not a folder", path=str(rel))
    target = out / rel
    if target.is_dir():
        raise OutputExists(f"refusing to replace the folder {target} with the file {rel}", path=str(rel))
    if not target.parent.resolve().is_relative_to(out):
        raise BadRequest(f"refusing path {str(rel)!r}: it resolves outside {out}", path=str(rel))


def _write_in_place(
    client: BlobSource,
    files: Sequence[ManifestFile],
    paths: list[PurePosixPath],
    out: Path,
    progress: TransferProgress | None,
) -> None:
    """Stage and verify every file inside `out` (same filesystem), then os.replace() each into place,
    creating subfolders as needed. On a failure, the files and folders this call added are removed
    again (an empty folder is left as it was); files it already replaced keep their new content."""
    staging = new_folder(out, ".adapters-pull-")
    added: list[Path] = []
    made: list[Path] = []
    try:
        _stage(client, files, staging, progress)
        for rel in paths:
            _check_target(out, rel)  # again, just before writing
            cur = out
            for part in rel.parts[:-1]:
                cur = cur / part
                if not cur.exists():
                    cur.mkdir()
                    made.append(cur)
            target = out / rel
            existed = target.exists() or target.is_symlink()
            os.replace(staging / rel, target)
            if not existed:
                added.append(target)
    except BaseException:
        for p in added:
            p.unlink(missing_ok=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staged_path(f: ManifestFile, staging: Path) -> Path:
    target = staging / f.path
    if not target.resolve().is_relative_to(staging.resolve()):
        raise BadRequest(f"refusing path {f.path!r} outside the output folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy_verified(client: BlobSource, f: ManifestFile, target: Path) -> None:
    """Copy a cached blob to `target`, hashed as it is copied. A cache entry shares its file with
    the folder a pull wrote it into, so a pulled file edited in place changes it: such an entry is
    dropped and the blob downloaded again (into `target`, the cache taking the new file). Where the
    cache is the registry's own blob directory (a file store) a mismatch means the registry's blob
    is corrupt: that is raised, and nothing is deleted."""
    try:
        if isinstance(client.cache, LocalBlobStore):  # what every client's cache is
            client.cache.copy_out(f.sha256, target, f.size)
        else:
            write_verified(client.cache.open(f.sha256), target, f.sha256, f.size, durable=False)
    except (StoreDigestMismatch, StoreSizeMismatch) as err:
        if client.cache_is_store:
            raise DigestMismatch(
                f"{f.path}: the registry's stored blob does not hash to {f.sha256}: it is corrupt",
                path=f.path,
            ) from err
        client.cache.delete(f.sha256)  # (the copy removed `target`)
        client.fetch_blob(f.sha256, f.size, None, into=target)
