"""What a Hub HEAD or GET of one file needs: the revision's commit and file table, read in one
statement, with the revision's resolution remembered per process.

`hub.resolve_revision` builds a whole revision (the repository selected twice, evals, card data,
the privacy flag: eight statements), and huggingface_hub's snapshot_download of n files asks
1 + 2n of them (model_info, then a HEAD and a GET per file). A file needs far less:

- Every request runs one statement: the repository, whether its namespace is public (so access
  is decided on every request, from the database: the cache never holds a permission), the
  version the revision names, and the newest signature attached to it (served as model.sig,
  services/signatures.py; one can be attached at any time).
- A revision that names an immutable thing (a version number or a commit id: numbers are never
  given again, `version_counter`; a commit id is a prefix of the manifest digest) resolves once
  per process: the LRU keeps (repository, revision) -> (version id, digest), and the statement
  then only checks that this version still exists with that digest. (A commit id resolves to
  the newest version with that digest; one pushed later with the same digest holds the same
  files, so the remembered one serves the same bytes.) A mutable revision (`main`, an alias) is
  resolved by the statement itself, every time.
- A version's file table is the same forever (its digest is the digest of the table), so it is
  kept by (version id, digest) and read once per process.

Deletion (`adapters rm`, services/lifecycle.py) deletes the version row. A version deleted on
another replica is therefore seen by the next request here, whose statement finds no row for
the remembered id: the entry is dropped and the revision resolved afresh (404 when nothing is
left). Checking existence in the statement every request runs anyway costs nothing extra; a
time-to-live or an invalidation message between replicas would serve a deleted file meanwhile,
or need a channel the replicas do not have. A version id SQLite reuses after a delete holds
another digest, or the same digest and so the same files.

An uploaded base (or exported model) is as immutable once its files are recorded (the manifest
is set once; a base name is never removed nor pointed elsewhere, services/bases.py): its commit,
file table and accepted revisions are kept by name, and whether the reader may read it is asked
every time (`base_readable`: a name added later can make it readable). A repository create_repo
made with no version yet, and a name that is neither, go through `hub.resolve_revision`, as
model_info does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from registry.access.checks import base_readable
from registry.access.policy import NamespaceRes, may
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import read_only
from registry.errors import EntryNotFound, RepoNotFound
from registry.formats.paths import SIGNATURE_NAME
from registry.refs import repo_or_none
from registry.services import hub
from registry.services.context import Registry
from registry.services.downloads import DownloadKey
from registry.services.signatures import SIGNATURE

Files = Mapping[str, hub.HubFile]


@dataclass(frozen=True)
class FileRevision:
    """A revision as far as serving its files goes."""

    repo_id: str
    kind: str
    """"adapter" or "model" (as HubRevision.kind)."""
    commit: str
    files: Files
    repository_id: int | None = None
    version: int | None = None

    @property
    def download_key(self) -> DownloadKey | None:
        return hub.download_key(self.kind, self.repo_id, self.repository_id, self.version)

    def file(self, path: str) -> hub.HubFile:
        """Raises EntryNotFound (carrying the commit id) when the revision has no such file."""
        found = self.files.get(path)
        if found is None:
            raise EntryNotFound(
                f"{self.repo_id}@{self.commit} has no file {path!r}", path=path, commit=self.commit
            )
        return found


def resolve_file_revision(reg: Registry, repo_id: str, revision: str, reader: Principal) -> FileRevision:
    """The revision of `repo_id` that a HEAD or GET of one of its files reads, as `reader` may.

    Raises:
        RepoNotFound: no such repository, or one the reader may not read.
        RevisionNotFound: the repository exists but has no such revision.
    """
    name = repo_or_none(repo_id)
    with read_only(reg.sessions) as session:
        found = None
        if name is not None:
            how, params = _form(revision)
            params.update(namespace=name.namespace, name=name.name)
            found = _resolve(reg, session, (repo_id, revision), how, params, reader)
        if found is None:  # no adapter repository with a version: a base of that name wins (hub._open)
            found = _resolve_base(reg, session, repo_id, revision, reader)
    if found is None:  # an empty repository, or nothing: outside the session above
        return _whole(reg, repo_id, revision, reader)
    return found


def _resolve(
    reg: Registry,
    session: Session,
    key: tuple[str, str],
    how: str,
    params: dict[str, Any],
    reader: Principal,
) -> FileRevision | None:
    repo_id, revision = key
    known = reg.hub_revisions.get(key) if how in IMMUTABLE else None
    if known is not None:
        row = session.execute(_statement("known"), {**params, **known}).one_or_none()
        if row is None or row.version_id is None:
            reg.hub_revisions.pop(key)  # deleted since (here or on another replica)
            known = None
    if known is None:
        row = session.execute(_statement(how), params).one_or_none()
    if row is None or row.latest_version == 0:
        return None
    if not may(reader, "read", NamespaceRes(params["namespace"], bool(row.public))):
        raise RepoNotFound(f"repository {repo_id!r} not found", repo=repo_id)
    if row.version_id is None:
        raise hub.revision_not_found(repo_id, revision)
    if how in IMMUTABLE and known is None:
        reg.hub_revisions.put(key, {"version_id": row.version_id, "digest": row.digest})
    files = _files(reg, session, row.version_id, row.digest)
    if SIGNATURE_NAME not in files and row.sig_digest is not None:  # reads.version_files' rule
        sig = hub.HubFile(SIGNATURE_NAME, row.sig_size, row.sig_digest.removeprefix("sha256:"))
        files = {**files, SIGNATURE_NAME: sig}
    return FileRevision(repo_id, "adapter", hub.commit_id(row.digest), files, row.repository_id, row.number)


IMMUTABLE = frozenset({"number", "commit"})
"""Revision forms that name the same version as long as it exists."""


def _form(revision: str) -> tuple[str, dict[str, Any]]:
    """How the statement finds the version `revision` names (hub.revision_form), and its parameters."""
    how, value = hub.revision_form(revision)
    key = {"commit": "prefix", "number": "number", "alias": "alias"}.get(how)
    return how, {} if key is None else {key: value}


@dataclass(frozen=True)
class _Base:
    base_id: int
    commit: str
    files: Files
    revisions: frozenset[str]


def _resolve_base(
    reg: Registry, session: Session, repo_id: str, revision: str, reader: Principal
) -> FileRevision | None:
    """The uploaded base named `repo_id` (hub._model_revision), its facts read once per process."""
    if len(repo_id) > 256:
        return None
    known = reg.hub_bases.get(repo_id)
    if known is None:
        base = session.scalars(
            select(m.BaseModel)
            .join(m.BaseName, m.BaseName.base_model_id == m.BaseModel.id)
            .where(m.BaseName.name == repo_id)
        ).one_or_none()
        if base is None or base.manifest is None:
            return None
        commit = hub.commit_id(hub.base_digest(base))
        named = session.get(m.BaseName, repo_id)
        extra = {named.revision} if named is not None and named.revision else set()
        known = _Base(
            base.id,
            commit,
            {f.path: f for f in hub.base_files(base)},
            frozenset({hub.MAIN, f"refs/heads/{hub.MAIN}", commit, *extra}),
        )
        reg.hub_bases.put(repo_id, known)
    if not base_readable(session, reader, known.base_id):
        raise RepoNotFound(f"repository {repo_id!r} not found", repo=repo_id)
    if revision not in known.revisions:
        raise hub.revision_not_found(repo_id, revision)
    return FileRevision(repo_id, "model", known.commit, known.files)


def _whole(reg: Registry, repo_id: str, revision: str, reader: Principal) -> FileRevision:
    rev = hub.resolve_revision(reg, repo_id, revision, reader)
    return FileRevision(
        rev.repo_id, rev.kind, rev.commit, {f.path: f for f in rev.files}, rev.repository_id, rev.version
    )


def _files(reg: Registry, session: Session, version_id: int, digest: str) -> Files:
    """The version's own files, read once per process: the digest is the digest of this table."""
    key = (version_id, digest)
    files = reg.hub_files.get(key)
    if files is None:
        f = m.VersionFile
        rows = session.execute(select(f.path, f.size, f.digest).where(f.version_id == version_id))
        files = {p: hub.HubFile(p, size, d.removeprefix("sha256:")) for p, size, d in rows}
        reg.hub_files.put(key, files)
    return files


def _statement(how: str) -> Select[Any]:
    """The one statement of a file request: the repository, whether its namespace is public, the
    version `how` finds (none: no row for it) and the newest signature attached to that version.
    Built once per form and kept (a reused statement keeps its compiled form cached)."""
    cached = _STATEMENTS.get(how)
    if cached is not None:
        return cached
    r, v, s = m.Repository, m.Version, m.VersionSignature
    other = aliased(m.Version)
    finds = {
        "latest": v.number == r.latest_version,
        "number": v.number == bindparam("number"),
        "commit": v.number
        == select(func.max(other.number))
        .where(other.repository_id == r.id, other.digest.startswith(bindparam("prefix")))
        .scalar_subquery(),
        "alias": v.id
        == select(m.Alias.version_id)
        .where(m.Alias.repository_id == r.id, m.Alias.name == bindparam("alias"))
        .scalar_subquery(),
        "known": and_(v.id == bindparam("version_id"), v.digest == bindparam("digest")),
    }
    newest_sig = select(s).where(s.version_id == v.id, s.purpose == SIGNATURE).order_by(s.id.desc()).limit(1)
    public = select(m.Namespace.public).where(m.Namespace.name == r.namespace).scalar_subquery()
    stmt = (
        select(
            r.id.label("repository_id"),
            r.latest_version,
            public.label("public"),
            v.id.label("version_id"),
            v.number,
            v.digest,
            newest_sig.with_only_columns(s.size).scalar_subquery().label("sig_size"),
            newest_sig.with_only_columns(s.digest).scalar_subquery().label("sig_digest"),
        )
        .select_from(r)
        .outerjoin(v, and_(v.repository_id == r.id, finds[how]))
        .where(r.namespace == bindparam("namespace"), r.name == bindparam("name"))
    )
    _STATEMENTS[how] = stmt
    return stmt


_STATEMENTS: dict[str, Select[Any]] = {}
