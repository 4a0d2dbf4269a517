"""The Hub's discovery calls: `list_models`, `list_repo_commits`, `get_paths_info`, and the
download counts and model cards that `model_info` shows.

Read-only, and through the same read rule as `hub.resolve_revision`: a listing holds only the
repositories the caller may read (adapter repositories by `checks.readable` in SQL, base names by
`policy.may`), and the per-repository calls open the repository with `hub.revision_in`, so one the
caller may not read answers RepoNotFound exactly like a missing one.

A listing costs a constant number of queries whatever the page: the readable adapter repositories
with their latest version and download count (one query), the uploaded bases' names (one), the
public namespaces (one), and for the page only, its files when asked (one). Filters and sorting run
on those rows in Python, because a repository's tags join columns, its base's names and its README;
READMEs are read only when a filter is not met by the derived tags, or the card is asked for.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from registry.access.checks import readable
from registry.access.policy import BaseNameRes, may
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import read_only
from registry.errors import BadRequest
from registry.services import downloads, hub, model_card
from registry.services.context import Registry
from registry.services.hub import EMPTY_COMMIT, EMPTY_TAGS, HubFile, HubRevision, TreeEntry
from registry.services.hub_files import FileRevision

LIST_PAGE = 1000
LIST_PAGE_FILES = 20_000
"""The most files (siblings) one listing page carries when they are asked for: the page ends
early, and its Link header names the rest."""
"""Repositories per list_models page (the Hub's own page)."""
COMMITS_PAGE = 100
"""Commits per list_repo_commits page."""
SORTS = {
    "downloads": "downloads",
    "likes": "likes",
    "trendingScore": "likes",  # no likes, no trend: both 0, so the order is the repository id's
    "lastModified": "last_modified",
    "createdAt": "created_at",
    "id": "id",
    "modelId": "id",
}
"""The Hub's `sort` values (what huggingface_hub sends) and the field each sorts by."""


@dataclass(frozen=True)
class ModelQuery:
    """What list_models asked for, parsed (the API layer maps the Hub's query parameters)."""

    search: str | None = None
    author: str | None = None
    filters: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    sort: str | None = None
    """A key of SORTS, or None: by repository id."""
    ascending: bool = False
    """For a sort by a number or a time (`direction=1`); ids sort ascending."""
    limit: int = LIST_PAGE
    cursor: str | None = None
    files: bool = False
    """Fetch each listed repository's file names (siblings)."""
    cards: bool = False
    """Read each listed repository's README for its card (cardData)."""
    nothing: bool = False
    """A filter no repository here meets (gated, served by an inference provider)."""


@dataclass(frozen=True)
class ListedModel:
    repo_id: str
    kind: str
    commit: str
    created_at: datetime
    last_modified: datetime
    private: bool
    library_name: str
    tags: list[str]
    pipeline_tag: str | None
    downloads: int
    card_data: dict[str, Any]
    config: dict[str, Any]
    files: list[HubFile] | None = None
    readme: HubFile | None = None
    version_id: int | None = None
    base_files: list[HubFile] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ModelPage:
    items: list[ListedModel]
    next_cursor: str | None = None


@dataclass(frozen=True)
class HubCommit:
    commit: str
    title: str
    message: str
    authors: list[str]
    date: datetime


# ---------------------------------------------------------------- list_models
def list_models(reg: Registry, query: ModelQuery, reader: Principal) -> ModelPage:
    """One page of the repositories `reader` may read that match `query`, sorted as asked;
    `next_cursor` names the page after it."""
    after = _decode_cursor(query.cursor)
    if query.sort is not None and query.sort not in SORTS:
        raise BadRequest(f"unknown sort {query.sort!r}: use one of {', '.join(sorted(SORTS))}", field="sort")
    if query.nothing:
        return ModelPage(items=[], next_cursor=None)
    with read_only(reg.sessions) as session:
        found = _candidates(session, query, reader, reg.downloads)
    found = [c for c in found if _matches(reg, c, query)]
    found.sort(key=lambda c: _sort_key(c, query))
    if after is not None:
        found = [c for c in found if _sort_key(c, query) > after]
    page = found[: query.limit]
    if query.files:  # siblings: a page of 1,000 repositories of 10,000 files each would be 10M
        page = page[: _fitting_files(reg, page)]
    nxt = _encode_cursor(_sort_key(page[-1], query)) if len(found) > len(page) else None
    if query.files:
        page = _with_files(reg, page)
    if query.cards:
        page = [_with_card(reg, c) for c in page]
    return ModelPage(items=page, next_cursor=nxt)


def _candidates(
    session: Session, query: ModelQuery, reader: Principal, pending: downloads.DownloadCounter
) -> list[ListedModel]:
    public = set(session.scalars(select(m.Namespace.name).where(m.Namespace.public)))
    adapters = _adapter_candidates(session, query, reader, public, pending)
    bases = _base_candidates(session, query, reader, public, pending)
    # As hub._open decides: an adapter repository with a version wins over a base of the same
    # name (refused at creation since), a base over a repository create_repo made empty.
    by_id = {c.repo_id: c for c in bases}
    for c in adapters:
        if c.commit != EMPTY_COMMIT or c.repo_id not in by_id:
            by_id[c.repo_id] = c
    return list(by_id.values())


def _search_clause(query: ModelQuery, repo_id: Any) -> list[Any]:
    if not query.search:
        return []
    return [func.lower(repo_id).contains(query.search.lower(), autoescape=True)]


def _adapter_candidates(
    session: Session,
    query: ModelQuery,
    reader: Principal,
    public: set[str],
    pending: downloads.DownloadCounter,
) -> list[ListedModel]:
    r, v, d = m.Repository, m.Version, m.HubDownloads
    repo_id = r.namespace + "/" + r.name
    q = (
        select(
            r.id,
            r.namespace,
            r.name,
            r.created_at,
            v.id,
            v.digest,
            v.created_at,
            v.peft_type,
            v.task_type,
            v.task,
            v.base_model_name,
            d.downloads,
            m.VersionFile.size,
            m.VersionFile.digest,
        )
        .outerjoin(v, and_(v.repository_id == r.id, v.number == r.latest_version))
        .outerjoin(d, d.repository_id == r.id)
        .outerjoin(
            m.VersionFile, and_(m.VersionFile.version_id == v.id, m.VersionFile.path == model_card.README)
        )
        .where(
            # Listed as /v1/repos lists: with a version, or never had one (create_repo made it).
            or_(r.latest_version > 0, r.version_counter == 0),
            readable(reader, r.namespace),
            *_search_clause(query, repo_id),
        )
    )
    if query.author is not None:
        q = q.where(r.namespace == query.author)
    found = []
    for (
        rid,
        ns,
        name,
        created,
        vid,
        digest,
        modified,
        peft,
        task_type,
        task,
        base,
        count,
        rsize,
        rdigest,
    ) in session.execute(q):
        key: downloads.DownloadKey = ("repo", rid)
        if vid is None:
            tags, card, pipeline = list(EMPTY_TAGS), {"library_name": "peft", "tags": list(EMPTY_TAGS)}, None
            commit, config, modified = EMPTY_COMMIT, {}, created
        else:
            tags, card, pipeline = hub.adapter_metadata(peft, task_type, task, base)
            commit, config = hub.commit_id(digest), hub.adapter_config(peft, task_type, base)
        readme = HubFile(model_card.README, rsize, rdigest.removeprefix("sha256:")) if rdigest else None
        found.append(
            ListedModel(
                repo_id=f"{ns}/{name}",
                kind="adapter",
                commit=commit,
                created_at=created,
                last_modified=modified,
                private=ns not in public,
                library_name="peft",
                tags=tags,
                pipeline_tag=pipeline,
                downloads=(count or 0) + pending.pending(key),
                card_data=card,
                config=config,
                readme=readme,
                version_id=vid,
            )
        )
    return found


def _base_candidates(
    session: Session,
    query: ModelQuery,
    reader: Principal,
    public: set[str],
    pending: downloads.DownloadCounter,
) -> list[ListedModel]:
    rows = session.execute(
        select(m.BaseName.name, m.BaseModel, m.HubDownloads.downloads)
        .join(m.BaseModel, m.BaseModel.id == m.BaseName.base_model_id)
        .outerjoin(m.HubDownloads, m.HubDownloads.base_name == m.BaseName.name)
    ).all()
    names_of: dict[int, list[str]] = {}
    for name, base, _ in rows:
        names_of.setdefault(base.id, []).append(name)
    found = []
    for name, base, count in rows:
        ns, slash, _ = name.partition("/")
        if base.manifest is None or not may(reader, "read", BaseNameRes(name, bool(slash) and ns in public)):
            continue
        if query.author is not None and (not slash or ns != query.author):
            continue
        if query.search and query.search.lower() not in name.lower():
            continue
        tags, card, pipeline = hub.model_metadata(base)
        files = hub.base_files(base)
        # Private as model_info says: unless some name of the base is in a public namespace.
        private = not any("/" in n and n.split("/")[0] in public for n in names_of[base.id])
        found.append(
            ListedModel(
                repo_id=name,
                kind="model",
                commit=hub.commit_id(hub.base_digest(base)),
                created_at=base.created_at,
                last_modified=base.created_at,
                private=private,
                library_name="transformers",
                tags=tags,
                pipeline_tag=pipeline,
                downloads=(count or 0) + pending.pending(("base", name)),
                card_data=card,
                config={"architectures": base.architectures, "model_type": base.model_type},
                readme=next((f for f in files if f.path == model_card.README), None),
                base_files=files,
            )
        )
    return found


def _matches(reg: Registry, c: ListedModel, query: ModelQuery) -> bool:
    if query.pipeline_tag is not None and c.pipeline_tag != query.pipeline_tag:
        return False
    if not query.filters:
        return True
    known = {*c.tags, c.library_name, *([c.pipeline_tag] if c.pipeline_tag else [])}
    wanted = set(query.filters) - known
    if not wanted:
        return True
    if c.readme is None:
        return False
    return wanted <= set(model_card.card_tags(model_card.read_card(reg, c.readme) or {}))


def _sort_key(c: ListedModel, query: ModelQuery) -> tuple[float, str]:
    by = SORTS.get(query.sort or "id", "id")
    if by == "id":
        return (0.0, c.repo_id)
    value: float
    if by == "downloads":
        value = float(c.downloads)
    elif by == "last_modified":
        value = c.last_modified.timestamp()
    elif by == "created_at":
        value = c.created_at.timestamp()
    else:
        value = 0.0  # likes
    return (value if query.ascending else -value, c.repo_id)


MAX_CURSOR_CHARS = 512


def _encode_cursor(key: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    if len(cursor) > MAX_CURSOR_CHARS:  # ours are a number and a repository id
        cursor = "!"  # not base64: refused below like any other cursor not made here
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value, repo_id = json.loads(raw)
        if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(repo_id, str):
            return (float(value), repo_id)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        pass
    raise BadRequest("invalid cursor: pass the Link header's next URL as it came", field="cursor")


def _fitting_files(reg: Registry, page: list[ListedModel]) -> int:
    """How many of the page's repositories (at least one) fit LIST_PAGE_FILES files together."""
    versions = [c.version_id for c in page if c.version_id is not None]
    counts: dict[int, int] = {}
    if versions:
        with read_only(reg.sessions) as session:
            counts = dict(
                session.execute(
                    select(m.VersionFile.version_id, func.count())
                    .where(m.VersionFile.version_id.in_(versions))
                    .group_by(m.VersionFile.version_id)
                ).all()
            )
    total = 0
    for n, c in enumerate(page):
        total += len(c.base_files or ()) if c.kind == "model" else counts.get(c.version_id or 0, 0)
        if total > LIST_PAGE_FILES and n > 0:
            return n
    return len(page)


def _with_files(reg: Registry, page: list[ListedModel]) -> list[ListedModel]:
    versions = [c.version_id for c in page if c.version_id is not None]
    by_version: dict[int, list[HubFile]] = {}
    if versions:
        with read_only(reg.sessions) as session:
            for vid, path, size, digest in session.execute(
                select(m.VersionFile.version_id, m.VersionFile.path, m.VersionFile.size, m.VersionFile.digest)
                .where(m.VersionFile.version_id.in_(versions))
                .order_by(m.VersionFile.version_id, m.VersionFile.path)
            ):
                by_version.setdefault(vid, []).append(HubFile(path, size, digest.removeprefix("sha256:")))
    return [
        replace(c, files=c.base_files if c.kind == "model" else by_version.get(c.version_id or 0, []))
        for c in page
    ]


def _with_card(reg: Registry, c: ListedModel) -> ListedModel:
    card = model_card.read_card(reg, c.readme) if c.readme is not None else None
    if not card:
        return c
    card_data, tags = model_card.merge(c.card_data, c.tags, card)
    return replace(c, card_data=card_data, tags=tags)


# ---------------------------------------------------------------- model_info's extras
def with_discovery(reg: Registry, rev: HubRevision) -> tuple[HubRevision, int]:
    """`rev` with its README's card, and its download count (stored + this process's pending)."""
    rev = model_card.with_card(reg, rev)
    key = rev.download_key
    if key is None:
        return rev, 0
    with read_only(reg.sessions) as session:
        count = downloads.stored(session, key)
    return rev, count + reg.downloads.pending(key)


def count_download(reg: Registry, rev: HubRevision | FileRevision, path: str, method: str) -> None:
    """Count a download when a GET asks for the revision's query file (services/downloads.py)."""
    key = rev.download_key
    if method == "GET" and key is not None and path == downloads.COUNTED_FILES.get(rev.kind):
        reg.downloads.add(key)


# ---------------------------------------------------------------- list_repo_commits
def list_commits(
    reg: Registry, repo_id: str, revision: str, reader: Principal, before: int | None, limit: int
) -> tuple[list[HubCommit], int | None]:
    """The commits reachable from `revision`, newest first: the versions up to the one it names
    (an alias of version 3 lists 3, 2, 1), each under the commit id every Hub route uses for it
    (`hub.commit_id` of its digest), with its message (title: the first line) and who pushed it.
    `before`: continue below that version number. A base has one commit; a repository that
    create_repo made and nothing filled has its initial (empty) commit.

    Raises:
        RepoNotFound: no such repository, or one the reader may not read.
        RevisionNotFound: the repository exists but has no such revision.
    """
    with read_only(reg.sessions) as session:
        rev = hub.revision_in(session, repo_id, revision, reader)
        if rev.kind == "model":
            return [HubCommit(rev.commit, f"Upload {repo_id}", "", [], rev.last_modified)], None
        if rev.version is None or rev.repository_id is None:
            return [HubCommit(EMPTY_COMMIT, "initial commit", "", [], rev.created_at)], None
        v = m.Version
        q = select(v.number, v.digest, v.message, v.pushed_by, v.created_at).where(
            v.repository_id == rev.repository_id, v.number <= rev.version
        )
        if before is not None:
            q = q.where(v.number < before)
        rows = session.execute(q.order_by(v.number.desc()).limit(limit + 1)).all()
    commits = [_commit(n, digest, message, who, at) for n, digest, message, who, at in rows[:limit]]
    return commits, (rows[limit - 1][0] if len(rows) > limit else None)


def _commit(number: int, digest: str, message: str | None, who: str, at: datetime) -> HubCommit:
    text = (message or "").strip()
    title, _, rest = text.partition("\n")
    return HubCommit(
        hub.commit_id(digest),
        title.strip() or f"version {number}",
        rest.strip(),
        [who] if who else [],
        at,
    )


# ---------------------------------------------------------------- get_paths_info
def paths_info(rev: HubRevision, paths: list[str]) -> list[TreeEntry]:
    """The files and folders of `rev` among `paths`, in the order asked, each once; a path that
    is neither is left out (the Hub's answer; the client ignores them)."""
    files = {f.path: f for f in rev.files}
    folders = {f.path.rsplit("/", 1)[0] for f in rev.files if "/" in f.path}
    for folder in list(folders):
        while "/" in folder:
            folder = folder.rsplit("/", 1)[0]
            folders.add(folder)
    found: dict[str, TreeEntry] = {}
    for raw in paths:
        path = raw.strip("/")
        if not path or path in found:
            continue
        if path in files:
            f = files[path]
            found[path] = TreeEntry("file", path, f, f.git_oid)
        elif path in folders:
            found[path] = hub.folder_entry(rev.commit, path)
    return list(found.values())


def last_commits(reg: Registry, rev: HubRevision, entries: list[TreeEntry]) -> dict[str, HubCommit]:
    """For each entry, the commit that last changed it up to `rev` (paths-info's `expand`): the
    oldest version from which on, through `rev`'s, the file (a folder: everything below it) held
    the same bytes. Three queries whatever the number of paths: the versions up to `rev`, their
    files (only the paths asked for when all are files), the commits found."""
    if not entries:
        return {}
    if rev.kind == "model" or rev.version is None or rev.repository_id is None:
        only = HubCommit(rev.commit, "", "", [], rev.last_modified)
        return {e.path: only for e in entries}
    v, vf = m.Version, m.VersionFile
    upto = (v.repository_id == rev.repository_id, v.number <= rev.version)
    q = select(v.number, vf.path, vf.digest).join(vf, vf.version_id == v.id).where(*upto)
    if all(e.type == "file" for e in entries) and len(entries) <= 500:
        q = q.where(vf.path.in_([e.path for e in entries]))
    with read_only(reg.sessions) as session:
        numbers = sorted(session.scalars(select(v.number).where(*upto)), reverse=True)
        held: dict[int, dict[str, str]] = {n: {} for n in numbers}
        for number, path, digest in session.execute(q):
            held[number][path] = digest
        since: dict[str, int] = {}
        for e in entries:
            now, first = _state(held[numbers[0]], e), numbers[0]
            for n in numbers[1:]:
                if _state(held[n], e) != now:
                    break
                first = n
            since[e.path] = first
        found = session.execute(
            select(v.number, v.digest, v.message, v.pushed_by, v.created_at).where(
                v.repository_id == rev.repository_id, v.number.in_(sorted(set(since.values())))
            )
        )
        commits = {n: _commit(n, digest, message, who, at) for n, digest, message, who, at in found}
    return {path: commits[n] for path, n in since.items()}


def _state(files: dict[str, str], entry: TreeEntry) -> frozenset[tuple[str, str]]:
    """What a version held at `entry`: the file's (path, digest), or a folder's every one below it."""
    if entry.type == "file":
        return frozenset({(entry.path, files[entry.path])} if entry.path in files else ())
    prefix = f"{entry.path}/"
    return frozenset((p, d) for p, d in files.items() if p.startswith(prefix))
