"""The Hugging Face Hub protocol's write path: create_repo, delete_repo, preupload and commit,
translated onto the push path. A Hub commit applies its added and deleted files to the parent version's file set
and ends in `versions.commit_version`, the same function `adapters push` ends in: every push
check, one transaction. Every write first passes `hub.check_write` (write on the repository's
namespace), and the commit records the principal's user as who pushed. Its LFS files must be blobs
the principal may use (`blobs_unusable`: it may read them, or uploaded them), as in `adapters push`.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import pydantic
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.access.checks import blobs_unusable
from registry.access.principal import Principal
from registry.bounds import MAX_VERSION_FILES
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import DeleteResult, FileInfo, PushRequest, PushResult
from registry.errors import (
    BlobMissing,
    Conflict,
    EntryNotFound,
    NotFound,
    PushTooLarge,
    RepoNotFound,
    ValidationFailed,
)
from registry.formats.inspect import inspect_files
from registry.formats.manifest import FileEntry
from registry.formats.selection import is_training_artefact
from registry.refs import RepoName
from registry.services import audit
from registry.services.blobs import read_listed, read_range, upload_as
from registry.services.context import Registry
from registry.services.hub import EMPTY_COMMIT, MAIN, check_write, commit_id
from registry.services.lifecycle import delete_repository
from registry.services.names import refuse_base_name
from registry.services.timeutil import now
from registry.services.versions import commit_on_latest, commit_version

INLINE_MAX_BYTES = 1024**2
"""Files up to this size whose first bytes hold no NUL come inline in the commit (base64), as the
Hub's "regular" files do; others go through the LFS batch API."""
# What `Trainer.push_to_hub` uploads beside the model that the registry never stores (its pickled
# training arguments, checkpoint folders, logs) is answered `shouldIgnore` by preupload, by the rule
# `adapters push` skips them with (formats/selection.py): the push goes through without them. A
# commit that lists one anyway is checked like any other file (a pickle is refused).


class _ParentMoved(Conflict):
    """Another commit landed between reading the parent and recording this one (code `conflict`)."""


@dataclass(frozen=True)
class UploadMode:
    path: str
    mode: str
    """"regular" (inline in the commit) or "lfs"."""
    oid: str | None
    """The file's id at the parent when the path exists there (the client skips unchanged files):
    sha256 hex for LFS files, the git blob id of the content for regular ones."""
    ignore: bool = False
    """The Hub's `shouldIgnore`: the client leaves the file out of the upload and the commit."""


@dataclass
class HubCommit:
    """One parsed commit: header and operations, in order of arrival."""

    summary: str = ""
    description: str = ""
    parent: str | None = None
    inline: dict[str, bytes] = field(default_factory=dict)
    lfs: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    """path -> (sha256 digest `sha256:<hex>`, size if the client sent it)."""
    deleted_files: list[str] = field(default_factory=list)
    deleted_folders: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return f"{self.summary}\n\n{self.description}" if self.description else self.summary


@dataclass(frozen=True)
class CommitDone:
    repo: str
    commit: str
    version: int
    created: bool


def _is_main(revision: str) -> bool:
    return revision in (MAIN, f"refs/heads/{MAIN}")


def create_repo(reg: Registry, repo_id: str, writer: Principal) -> bool:
    """Record an adapter repository with no version yet (what `HfApi.create_repo` expects to find
    afterwards), audited as `repo.create`; /v1 lists it (latest_version 0) and deletes it like any
    other. Returns False when it already exists.

    Raises:
        NameTaken: a base model holds the name.
    """
    repo = check_write(reg, writer, repo_id)
    with unit_of_work(reg.sessions) as session:
        if _repository(session, repo) is not None:
            return False
        refuse_base_name(session, repo)
        session.add(
            m.Repository(namespace=repo.namespace, name=repo.name, created_at=now(), latest_version=0)
        )
        audit.record(session, writer, "repo.create", str(repo), repo=str(repo))
        return True


def delete_repo(reg: Registry, repo_id: str, writer: Principal) -> DeleteResult:
    """`HfApi.delete_repo`: /v1's repository delete (`lifecycle.delete_repository`), a missing
    repository answered as the Hub's clients expect.

    Raises:
        RepoNotFound: no such repository (or none the writer may read).
    """
    repo = check_write(reg, writer, repo_id)
    try:
        return delete_repository(reg, repo, principal=writer)
    except NotFound as err:
        raise RepoNotFound(f"repository {repo_id!r} not found", repo=repo_id) from err


def _repository(session: Session, repo: RepoName) -> m.Repository | None:
    return session.scalars(
        select(m.Repository).where(m.Repository.namespace == repo.namespace, m.Repository.name == repo.name)
    ).one_or_none()


def _parent_files(session: Session, repo: RepoName) -> tuple[int, str, dict[str, FileEntry]]:
    """The latest version's number (0: none), commit id and files by path."""
    repository = _repository(session, repo)
    if repository is None or repository.latest_version == 0:
        return 0, EMPTY_COMMIT, {}
    version = session.scalars(
        select(m.Version).where(
            m.Version.repository_id == repository.id, m.Version.number == repository.latest_version
        )
    ).one()
    files = {f.path: FileEntry(f.path, f.size, f.digest) for f in version.files}
    return version.number, commit_id(version.digest), files


def _next_number(session: Session, repo: RepoName) -> int:
    """The number the next version gets (deleted numbers are never given again)."""
    repository = _repository(session, repo)
    if repository is None:
        return 1
    return max(repository.version_counter, repository.latest_version) + 1


def upload_modes(
    reg: Registry, repo_id: str, revision: str, writer: Principal, files: list[tuple[str, int, bytes]]
) -> list[UploadMode]:
    """`preupload`: how each (path, size, first bytes) goes up, and its id at `revision` if any."""
    repo = check_write(reg, writer, repo_id)
    _check_main(revision)
    with unit_of_work(reg.sessions) as session:
        _, _, parent = _parent_files(session, repo)
    out = []
    for path, size, sample in files:
        mode = "regular" if size <= INLINE_MAX_BYTES and b"\0" not in sample else "lfs"
        oid = None
        held = parent.get(path)
        if held is not None and held.size == size:
            if mode == "lfs":
                oid = held.sha256.removeprefix("sha256:")
            else:
                data = read_range(reg.store, held.sha256, 0, size) if size else b""
                oid = _git_blob_id(data)
        out.append(UploadMode(path, mode, oid, ignore=is_training_artefact(path)))
    return out


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _check_main(revision: str) -> None:
    if not _is_main(revision):
        raise ValidationFailed(
            f"commits go to {MAIN!r} (a new version); move an alias with `adapters alias` instead of "
            f"committing to {revision[:64]!r}",
            field="revision",
        )


def commit(
    reg: Registry, repo_id: str, revision: str, hub_commit: HubCommit, writer: Principal
) -> CommitDone:
    """Apply a Hub commit to the latest version's files and record the result as a new version
    through `commit_version`. Files are counted, then checked, before any inline one is stored.

    A commit without `parentCommit` applies to whatever is latest when it is recorded. It is first
    checked outside any lock; if another commit lands meanwhile, it is applied again to the new
    latest and checked and recorded under the repository's lock (`commit_on_latest`): concurrent
    parentless commits are serialised, not refused (four CLI pushers to one repository lost 14 of
    24 commits to 409 when three rebuilds were all it tried, and huggingface_hub does not retry).

    Raises:
        Conflict: `parentCommit` is not the latest version (or stopped being it during the commit).
        EntryNotFound: a deleted file is not in the parent.
        BlobMissing: an LFS file was not uploaded (or is a blob the writer may not use).
        PushTooLarge: the resulting version would hold more than MAX_VERSION_FILES files.
        InvalidAdapter (and subclasses): a push check refused the files.
    """
    repo = check_write(reg, writer, repo_id)
    _check_main(revision)
    inline = {
        path: FileEntry(path, len(data), "sha256:" + hashlib.sha256(data).hexdigest())
        for path, data in hub_commit.inline.items()
    }
    with unit_of_work(reg.sessions) as session:
        following = _next_number(session, repo)
        parent_commit, files, unusable = _parent(session, repo, hub_commit, writer)
    _apply(files, hub_commit, inline, unusable, reg, repo, parent_commit)
    entries = sorted(files.values(), key=lambda f: f.path)
    # Validate before writing: the inline files are read from memory, the rest from the store.
    inspect_files(entries, lambda e, s, n: _read(reg, hub_commit.inline, inline, e, s, n), reg.limits)
    request = _push_request(entries, hub_commit.message)  # the message too, before any write
    for path, entry in inline.items():  # every one is in the result: additions follow deletions
        # The commit carries the bytes: proof of possession, recorded like any upload.
        upload_as(reg, writer, io.BytesIO(hub_commit.inline[path]), entry.sha256, entry.size)

    def same_parent(session: Session, result: PushResult) -> None:
        if result.created and result.version != following:
            raise _ParentMoved(f"{repo} moved on during the commit; commit again", repo=str(repo))

    def on_latest(session: Session) -> PushRequest:
        parent_commit, files, unusable = _parent(session, repo, hub_commit, writer)
        _apply(files, hub_commit, inline, unusable, reg, repo, parent_commit)
        return _push_request(sorted(files.values(), key=lambda f: f.path), hub_commit.message)

    try:
        result = commit_version(reg, str(repo), request, writer.name, on_commit=same_parent, principal=writer)
    except _ParentMoved:
        if hub_commit.parent is not None:
            raise
        result = commit_on_latest(reg, str(repo), on_latest, writer.name, principal=writer)
    return CommitDone(str(repo), commit_id(result.digest), result.version, result.created)


def _parent(
    session: Session, repo: RepoName, hub_commit: HubCommit, writer: Principal
) -> tuple[str, dict[str, FileEntry], set[str]]:
    """The latest version's commit id and files, once it is the commit's `parentCommit` (if it
    names one), and which of the commit's LFS objects the writer may not use.

    Raises:
        Conflict: `parentCommit` is not the latest version.
    """
    _, parent_commit, files = _parent_files(session, repo)
    if hub_commit.parent is not None and hub_commit.parent != parent_commit:
        raise Conflict(
            f"parentCommit {hub_commit.parent[:40]} is not the latest commit of {repo} "
            f"({parent_commit}); pull and commit again",
            repo=str(repo),
        )
    unusable = set(blobs_unusable(session, writer, [d for d, _ in hub_commit.lfs.values()]))
    return parent_commit, files, unusable


def _apply(
    files: dict[str, FileEntry],
    hub_commit: HubCommit,
    inline: dict[str, FileEntry],
    unusable: set[str],
    reg: Registry,
    repo: RepoName,
    parent_commit: str,
) -> None:
    """Deletions first, then additions, as the Hub applies them; then the count. An LFS object
    the writer may not use (`unusable`) is answered as one not uploaded (before any of its bytes
    are read): no digest oracle."""
    for path in hub_commit.deleted_files:
        if files.pop(path, None) is None:
            raise EntryNotFound(
                f"A file with this name doesn't exist: {path!r} is not in {repo}@{parent_commit}",
                path=path,
                commit=parent_commit,
            )
    for folder in hub_commit.deleted_folders:
        prefix = folder.strip("/") + "/"
        gone = [p for p in files if p.startswith(prefix)]
        if not gone:
            raise EntryNotFound(
                f"A file with this name doesn't exist: no folder {folder!r} in {repo}@{parent_commit}",
                path=folder,
                commit=parent_commit,
            )
        for p in gone:
            del files[p]
    files.update(inline)
    total = len(files.keys() | hub_commit.lfs.keys())
    if total > MAX_VERSION_FILES:  # before any LFS object is looked at
        raise PushTooLarge(
            f"the commit would make {repo} hold {total} files; a version holds at most {MAX_VERSION_FILES}",
            limit=MAX_VERSION_FILES,
        )
    for path, (digest, size) in hub_commit.lfs.items():
        held = None if digest in unusable else reg.store.stat(digest)
        if held is None or (size is not None and held.size != size):
            raise BlobMissing(
                f"{path}: LFS object {digest} was not uploaded; upload it through the LFS batch API first",
                path=path,
                digest=digest,
            )
        files[path] = FileEntry(path, held.size, digest)


def _read(
    reg: Registry,
    data: dict[str, bytes],
    inline: dict[str, FileEntry],
    entry: FileEntry,
    start: int,
    length: int,
) -> bytes:
    if inline.get(entry.path) == entry:
        return data[entry.path][start : start + length]
    return read_listed(reg.store, entry.path, entry.sha256, start, length)


def _push_request(entries: list[FileEntry], message: str) -> PushRequest:
    try:
        return PushRequest(
            files=[FileInfo.model_validate(f) for f in entries],
            message=message or None,
        )
    except pydantic.ValidationError as err:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3])
        raise ValidationFailed(f"the commit cannot be recorded: {detail}") from err
