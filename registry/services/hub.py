"""What the Hugging Face Hub protocol needs beyond /v1: repository ids that name an adapter
repository or an uploaded base, git-like revisions and commit ids, and file trees.

Every Hub read goes through `resolve_revision` (or `list_refs`), both of which open the repository
through `_open`, whose `_may_read` asks registry.access.policy; a HEAD or GET of one file goes
through `hub_files.resolve_file_revision`, which asks the same policy on every request. A
repository the reader may not read is answered exactly like one that does not exist (RepoNotFound). Every Hub write
(`services.hub_write`, `services.hub_lfs`) passes through `check_write`: write on the repository's
namespace (anonymous: 401; may read but not write: 403; may not read: RepoNotFound).

Commit ids: the first 40 hex characters of a version's manifest digest (a base: of the manifest of
its uploaded files), so a pinned revision names the same bytes forever.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from registry import reads
from registry.access.checks import base_readable, is_public, require_writer_of
from registry.access.policy import NamespaceRes, may
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.errors import EntryNotFound, NotFound, RepoNotFound, RevisionNotFound
from registry.formats.manifest import entries_from_json, manifest_digest
from registry.jobspec.lineage import read_lineage
from registry.reads.session import SessionDriver
from registry.refs import RepoName, parse_repo, repo_or_none
from registry.services.context import Registry
from registry.services.downloads import DownloadKey

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
NUMBER_RE = re.compile(r"[1-9][0-9]{0,8}")
MAIN = "main"
EMPTY_DIGEST = manifest_digest([])
EMPTY_COMMIT = EMPTY_DIGEST.removeprefix("sha256:")[:40]
"""The commit id of a repository with no version yet (the parent of its first commit)."""
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{hex}\nsize {size}\n"
# PEFT task types and the Hub pipeline tag a model card would carry for them.
PIPELINE_TAGS = {
    "CAUSAL_LM": "text-generation",
    "SEQ_2_SEQ_LM": "text2text-generation",
    "SEQ_CLS": "text-classification",
    "TOKEN_CLS": "token-classification",
    "QUESTION_ANS": "question-answering",
    "FEATURE_EXTRACTION": "feature-extraction",
}


def commit_id(digest: str) -> str:
    """The Hub commit id of a manifest digest `sha256:<hex>`: its first 40 hex characters."""
    return digest.removeprefix("sha256:")[:40]


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str
    """Hex, without the `sha256:` prefix (what the Hub's ETag and lfs.oid carry)."""

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def lfs_pointer(self) -> bytes:
        """The git-lfs pointer the Hub's git would hold for this file: every file is "in LFS" here."""
        return LFS_POINTER.format(hex=self.sha256, size=self.size).encode()

    @property
    def git_oid(self) -> str:
        """The git blob id of the pointer (what the Hub's `oid` of an LFS file is)."""
        pointer = self.lfs_pointer
        return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class HubRevision:
    """One revision of a Hub repository: an adapter version, or an uploaded base / exported model."""

    repo_id: str
    kind: str
    """"adapter" or "model"."""
    commit: str
    digest: str
    created_at: datetime
    """When the repository was created."""
    last_modified: datetime
    """When this revision was made."""
    files: list[HubFile]
    library_name: str
    tags: list[str]
    card_data: dict[str, Any]
    pipeline_tag: str | None = None
    config: dict[str, Any] | None = None
    version: int | None = None
    private: bool = True
    """Whether an anonymous caller may not read it (the Hub's `private`)."""
    repository_id: int | None = None
    """The adapter repository's row (None for a base)."""

    @property
    def download_key(self) -> DownloadKey | None:
        return download_key(self.kind, self.repo_id, self.repository_id, self.version)

    def file(self, path: str) -> HubFile:
        """Raises EntryNotFound (carrying the commit id) when the revision has no such file."""
        for f in self.files:
            if f.path == path:
                return f
        raise EntryNotFound(
            f"{self.repo_id}@{self.commit} has no file {path!r}", path=path, commit=self.commit
        )


def download_key(
    kind: str, repo_id: str, repository_id: int | None, version: int | None
) -> DownloadKey | None:
    """Where a download of a revision is counted: its adapter repository, or the base's name (an
    empty repository has nothing to download)."""
    if kind == "model":
        return ("base", repo_id)
    if repository_id is not None and version is not None:
        return ("repo", repository_id)
    return None


def revision_form(revision: str) -> tuple[str, Any]:
    """How a Hub revision names an adapter version, checked in this order: ("latest", None) for
    `main`, ("commit", the digest prefix) for a commit id (the newest version whose digest starts
    with it), ("number", n), else ("alias", its name)."""
    if revision in (MAIN, f"refs/heads/{MAIN}"):
        return "latest", None
    if COMMIT_RE.fullmatch(revision):
        return "commit", f"sha256:{revision}"
    if NUMBER_RE.fullmatch(revision):
        return "number", int(revision)
    return "alias", revision.removeprefix("refs/heads/")


@dataclass(frozen=True)
class HubRef:
    name: str
    ref: str
    commit: str


@dataclass(frozen=True)
class HubRefs:
    branches: list[HubRef]
    tags: list[HubRef] = field(default_factory=list)


@dataclass(frozen=True)
class TreeEntry:
    type: str
    """"file" or "directory"."""
    path: str
    file: HubFile | None = None
    oid: str = ""


@dataclass(frozen=True)
class _Target:
    repository: m.Repository | None = None
    base: m.BaseModel | None = None
    public: bool = False
    """Whether the adapter repository's namespace is public (read once, for the reader and for
    `private`)."""


def _may_read(session: Session, reader: Principal, target: _Target) -> bool:
    """Whether `reader` may read the repository: an adapter repository is its namespace's, an
    uploaded base is readable when one of its names is (registry.access.policy)."""
    if target.repository is not None:
        return may(reader, "read", NamespaceRes(target.repository.namespace, target.public))
    assert target.base is not None
    return base_readable(session, reader, target.base.id)


def _is_private(session: Session, target: _Target) -> bool:
    return not _may_read(session, Principal.anonymous(), target)


def check_write(reg: Registry, writer: Principal, repo_id: str) -> RepoName:
    """The adapter repository a Hub write (create_repo, preupload, the LFS batch, commit) names,
    once `writer` may write its namespace: the one permission check of the Hub's write path.

    Raises:
        InvalidReference: `repo_id` is not `namespace/name` as adapter repositories are named.
        Unauthenticated: an anonymous caller (a write needs a token).
        Forbidden: the writer may read the namespace but not write it.
        RepoNotFound: the writer may not even read it (answered like a repository that does not
            exist).
    """
    repo = parse_repo(repo_id)
    with unit_of_work(reg.sessions) as session:
        try:
            require_writer_of(session, writer, repo)
        except RepoNotFound:
            raise
        except NotFound as err:  # the Hub's clients tell a missing repository by RepoNotFound
            raise RepoNotFound(f"repository {repo_id!r} not found", repo=repo_id) from err
    return repo


def _open(session: Session, repo_id: str, reader: Principal) -> _Target:
    """The repository a Hub id names: an adapter repository (which wins when a base has the same
    name, refused at creation since) or an uploaded base model.

    A repository whose versions were all deleted (`adapters rm REPO --all`: its row is kept,
    latest_version 0, version_counter > 0, so numbers are never reused) does not exist here, as
    on /v1; one made by the Hub's create_repo that never had a version (version_counter 0) is an
    empty repository.

    Raises:
        RepoNotFound: no such repository, or one the reader may not read.
    """
    target = _Target()
    row: m.Repository | None = None
    name = repo_or_none(repo_id)
    if name is not None:
        row = session.scalars(
            select(m.Repository).where(
                m.Repository.namespace == name.namespace, m.Repository.name == name.name
            )
        ).one_or_none()
        public = row is not None and is_public(session, row.namespace)
        if row is not None and row.latest_version > 0:
            target = _Target(repository=row, public=public)
    if target.repository is None and len(repo_id) <= 256:
        base = session.scalars(
            select(m.BaseModel)
            .join(m.BaseName, m.BaseName.base_model_id == m.BaseModel.id)
            .where(m.BaseName.name == repo_id)
        ).one_or_none()
        if base is not None and base.manifest is not None:
            target = _Target(base=base)
    if (
        target.repository is None
        and target.base is None
        and row is not None
        and row.version_counter == 0  # never had a version: not one whose versions were deleted
    ):
        target = _Target(repository=row, public=public)  # made by the Hub's create_repo, no version yet
    if (target.repository is None and target.base is None) or not _may_read(session, reader, target):
        raise RepoNotFound(f"repository {repo_id!r} not found", repo=repo_id)
    return target


def resolve_revision(reg: Registry, repo_id: str, revision: str, reader: Principal) -> HubRevision:
    """The revision of a Hub repository: `main` (the latest version), a version number, an alias,
    or a commit id (the newest version whose digest starts with it).

    Raises:
        RepoNotFound: no such repository, or one the reader may not read.
        RevisionNotFound: the repository exists but has no such revision.
    """
    with unit_of_work(reg.sessions) as session:
        return revision_in(session, repo_id, revision, reader)


def revision_in(session: Session, repo_id: str, revision: str, reader: Principal) -> HubRevision:
    """`resolve_revision` inside the caller's unit of work (the discovery calls read more there)."""
    target = _open(session, repo_id, reader)
    if target.repository is not None:
        rev = _adapter_revision(session, repo_id, target.repository, revision)
    else:
        assert target.base is not None
        rev = _model_revision(session, repo_id, target.base, revision)
    return replace(rev, private=_is_private(session, target))


def list_refs(reg: Registry, repo_id: str, reader: Principal) -> HubRefs:
    """Branches: `main` and every alias (movable); tags: every version number (immutable)."""
    with unit_of_work(reg.sessions) as session:
        target = _open(session, repo_id, reader)
        if target.base is not None:
            return HubRefs(branches=[HubRef(MAIN, f"refs/heads/{MAIN}", _base_commit(target.base))])
        repository = target.repository
        assert repository is not None
        if repository.latest_version == 0:
            return HubRefs(branches=[HubRef(MAIN, f"refs/heads/{MAIN}", EMPTY_COMMIT)])
        versions = session.execute(
            select(m.Version.number, m.Version.digest)
            .where(m.Version.repository_id == repository.id)
            .order_by(m.Version.number)
        ).all()
        by_number = {n: commit_id(d) for n, d in versions}
        aliases = session.execute(
            select(m.Alias.name, m.Version.digest)
            .join(m.Version, m.Version.id == m.Alias.version_id)
            .where(m.Alias.repository_id == repository.id)
            .order_by(m.Alias.name)
        ).all()
        branches = [HubRef(MAIN, f"refs/heads/{MAIN}", by_number[repository.latest_version])]
        branches += [HubRef(a, f"refs/heads/{a}", commit_id(d)) for a, d in aliases if a != MAIN]
        tags = [HubRef(str(n), f"refs/tags/{n}", c) for n, c in by_number.items()]
        return HubRefs(branches=branches, tags=tags)


def revision_not_found(repo_id: str, revision: str) -> RevisionNotFound:
    return RevisionNotFound(f"{repo_id} has no revision {revision!r}", repo=repo_id, revision=revision)


def _adapter_revision(session: Session, repo_id: str, repository: m.Repository, revision: str) -> HubRevision:
    if repository.latest_version == 0:
        return _empty_revision(repo_id, repository, revision)
    q = select(m.Version).where(m.Version.repository_id == repository.id)
    how, value = revision_form(revision)
    if how == "latest":
        q = q.where(m.Version.number == repository.latest_version)
    elif how == "commit":
        q = q.where(m.Version.digest.startswith(value)).order_by(m.Version.number.desc())
    elif how == "number":
        q = q.where(m.Version.number == value)
    elif len(value) > 64:
        raise revision_not_found(repo_id, revision)
    else:
        q = q.join(m.Alias, m.Alias.version_id == m.Version.id).where(
            m.Alias.repository_id == repository.id, m.Alias.name == value
        )
    # The repository is loaded already (resolve_row selected it again), and evals are not shown.
    opts = (defer(m.Version.config), defer(m.Version.manifest))
    v = session.scalars(q.options(*opts).limit(1)).first()
    if v is None:
        raise revision_not_found(repo_id, revision)
    base = v.base_model_name
    tags, card, pipeline = adapter_metadata(v.peft_type, v.task_type, v.task, base)
    return HubRevision(
        repo_id=repo_id,
        kind="adapter",
        commit=commit_id(v.digest),
        digest=v.digest,
        created_at=repository.created_at,
        last_modified=v.created_at,
        # What a pull writes (registry.reads): the files, and an attached signature as model.sig
        # when the version has none of its own, so a snapshot_download passes `model_signing
        # verify`; the commit id stays the version's digest.
        files=[
            HubFile(f["path"], f["size"], f["sha256"].removeprefix("sha256:"))
            for f in reads.version_files(SessionDriver(session), v.id)
        ],
        library_name="peft",
        tags=tags,
        card_data=card,
        pipeline_tag=pipeline,
        config=adapter_config(v.peft_type, v.task_type, base),
        version=v.number,
        repository_id=repository.id,
    )


def adapter_metadata(
    peft_type: str, task_type: str | None, task: str | None, base: str | None
) -> tuple[list[str], dict[str, Any], str | None]:
    """An adapter version's Hub tags, derived card data and pipeline tag (what a model card
    would say), from the columns a listing reads too."""
    tags = ["peft", "safetensors", peft_type.lower()]
    card: dict[str, Any] = {"library_name": "peft"}
    if base:
        tags += [f"base_model:{base}", f"base_model:adapter:{base}"]
        card["base_model"] = base
    if task:
        tags.append(task)
    pipeline = PIPELINE_TAGS.get(task_type or "")
    if pipeline:
        card["pipeline_tag"] = pipeline
    card["tags"] = list(tags)
    return tags, card, pipeline


def adapter_config(peft_type: str, task_type: str | None, base: str | None) -> dict[str, Any]:
    return {"peft": {"base_model_name_or_path": base, "task_type": task_type, "peft_type": peft_type}}


EMPTY_TAGS = ["peft"]
"""The tags of a repository `create_repo` made that has no version yet."""


def _empty_revision(repo_id: str, repository: m.Repository, revision: str) -> HubRevision:
    """A repository `create_repo` made that has no version yet: `main` has no files."""
    if revision not in (MAIN, f"refs/heads/{MAIN}", EMPTY_COMMIT):
        raise revision_not_found(repo_id, revision)
    return HubRevision(
        repo_id=repo_id,
        kind="adapter",
        commit=EMPTY_COMMIT,
        digest=EMPTY_DIGEST,
        created_at=repository.created_at,
        last_modified=repository.created_at,
        files=[],
        library_name="peft",
        tags=list(EMPTY_TAGS),
        card_data={"library_name": "peft", "tags": list(EMPTY_TAGS)},
        repository_id=repository.id,
    )


def base_files(base: m.BaseModel) -> list[HubFile]:
    assert base.manifest is not None
    return sorted(
        (
            HubFile(e.path, e.size, e.sha256.removeprefix("sha256:"))
            for e in entries_from_json(base.manifest["files"])
        ),
        key=lambda f: f.path,
    )


def base_digest(base: m.BaseModel) -> str:
    assert base.manifest is not None
    return manifest_digest(entries_from_json(base.manifest["files"]))


def _base_commit(base: m.BaseModel) -> str:
    return commit_id(base_digest(base))


def _model_revision(session: Session, repo_id: str, base: m.BaseModel, revision: str) -> HubRevision:
    digest = base_digest(base)
    name = session.get(m.BaseName, repo_id)
    accepted = {MAIN, f"refs/heads/{MAIN}", commit_id(digest)}
    if name is not None and name.revision:
        accepted.add(name.revision)
    if revision not in accepted:
        raise revision_not_found(repo_id, revision)
    tags, card, pipeline = model_metadata(base)
    return HubRevision(
        repo_id=repo_id,
        kind="model",
        commit=commit_id(digest),
        digest=digest,
        created_at=base.created_at,
        last_modified=base.created_at,
        files=base_files(base),
        library_name="transformers",
        tags=tags,
        card_data=card,
        pipeline_tag=pipeline,
        config={"architectures": base.architectures, "model_type": base.model_type},
    )


def model_metadata(base: m.BaseModel) -> tuple[list[str], dict[str, Any], str | None]:
    """An uploaded base's (or exported model's) Hub tags, derived card data and pipeline tag."""
    tags = ["transformers", "safetensors"]
    if base.model_type:
        tags.append(base.model_type)
    card: dict[str, Any] = {"library_name": "transformers"}
    lin = read_lineage(base.lineage)
    parent = lin.base if lin is not None else None
    if parent:
        card["base_model"] = parent
        tags.append(f"base_model:merge:{parent}")
    card["tags"] = list(tags)
    pipeline = "text-generation" if any(a.endswith("ForCausalLM") for a in base.architectures) else None
    return tags, card, pipeline


def tree(rev: HubRevision, path: str, recursive: bool) -> list[TreeEntry]:
    """The entries under `path` ("" = the root), sorted by path; folders are implied by the files.

    Raises:
        EntryNotFound: `path` is neither a file nor a folder of the revision.
    """
    path = path.strip("/")
    prefix = f"{path}/" if path else ""
    entries: dict[str, TreeEntry] = {}
    for f in rev.files:
        if path and f.path == path:
            return [TreeEntry("file", f.path, f, f.git_oid)]
        if not f.path.startswith(prefix):
            continue
        parts = f.path[len(prefix) :].split("/")
        if recursive:
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, folder_entry(rev.commit, folder))
            entries[f.path] = TreeEntry("file", f.path, f, f.git_oid)
        elif len(parts) == 1:
            entries[f.path] = TreeEntry("file", f.path, f, f.git_oid)
        else:
            folder = prefix + parts[0]
            entries.setdefault(folder, folder_entry(rev.commit, folder))
    if path and not entries:
        raise EntryNotFound(f"{rev.repo_id}@{rev.commit} has no path {path!r}", path=path, commit=rev.commit)
    return [entries[k] for k in sorted(entries)]


def folder_entry(commit: str, path: str) -> TreeEntry:
    oid = hashlib.sha1(f"tree {commit} {path}".encode(), usedforsecurity=False).hexdigest()
    return TreeEntry("directory", path, None, oid)


def page_after(entries: list[TreeEntry], after: str | None, limit: int) -> tuple[list[TreeEntry], bool]:
    """The entries whose path sorts after `after`, at most `limit`, and whether more follow."""
    rest = [e for e in entries if after is None or e.path > after]
    return rest[:limit], len(rest) > limit
