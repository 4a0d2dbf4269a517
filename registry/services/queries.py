"""Listing and searching versions and repositories, paginated by keyset (limit + 1)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from registry import reads
from registry.access.checks import readable, require_reader_of
from registry.access.policy import readable_namespaces
from registry.access.principal import Principal
from registry.bounds import PAGE_MAX
from registry.db import models as m
from registry.db.engine import read_only, unit_of_work
from registry.entities import Page, RepoInfo, VersionFilter, VersionSummary
from registry.reads import Listing, check_limit, parse_cursor
from registry.reads.session import SessionDriver
from registry.refs import Ref
from registry.services.context import Registry
from registry.services.summaries import summary_entity

MAX_LIMIT = PAGE_MAX


def list_versions(
    reg: Registry,
    flt: VersionFilter,
    limit: int = 50,
    cursor: str | None = None,
    *,
    principal: Principal,
    search: str | None = None,
) -> Page[VersionSummary]:
    """Newest first, as summaries (`resolve` gives a version whole). Filters: repository, task,
    peft_type, base model name; latest_only per repo; `search`, a case-insensitive substring of
    "namespace/name" or of the task (the UI's). Only namespaces `principal` may read.
    Three queries a page (registry.reads.list_versions), whatever its size."""
    listing = Listing(**flt.model_dump(), search=search)
    with unit_of_work(reg.sessions) as session:
        doc = reads.list_versions(
            SessionDriver(session), listing, limit, cursor, readable=readable_namespaces(principal)
        )
    return Page[VersionSummary](
        items=[summary_entity(d) for d in doc["items"]], next_cursor=doc["next_cursor"]
    )


def resolve_files(reg: Registry, ref: Ref, *, principal: Principal) -> dict[str, Any]:
    """What a pull of `ref` writes: {repo, version, digest, ref, files} (registry.reads.resolve_files:
    the version's files and an attached model.sig). Raises NotFound when the version does not exist
    or `principal` may not read it, as `versions.resolve` does."""
    with unit_of_work(reg.sessions) as session:
        require_reader_of(session, principal, ref.repo, str(ref))
        return reads.resolve_files(SessionDriver(session), ref)


def list_repos(
    reg: Registry, limit: int = 50, cursor: str | None = None, *, principal: Principal
) -> Page[RepoInfo]:
    limit = check_limit(limit)
    # Listed: a repository with a version, or one that never had any (the Hub's create_repo made
    # it, latest_version 0); one whose versions were all deleted is a tombstone, not listed.
    q = select(m.Repository).where(
        or_(m.Repository.latest_version > 0, m.Repository.version_counter == 0),
        readable(principal, m.Repository.namespace),
    )
    after = parse_cursor(cursor)
    if after is not None:
        q = q.where(m.Repository.id > after)
    q = q.order_by(m.Repository.id).limit(limit + 1)
    with unit_of_work(reg.sessions) as session:
        rows = list(session.scalars(q))
        page = rows[:limit]
        # The page's aliases in one query (one per repository made a page of 50 cost 51).
        aliases: dict[int, dict[str, int]] = {r.id: {} for r in page}
        if page:
            for repository_id, alias, number in session.execute(
                select(m.Alias.repository_id, m.Alias.name, m.Version.number)
                .join(m.Version, m.Version.id == m.Alias.version_id)
                .where(m.Alias.repository_id.in_(list(aliases)))
                .order_by(m.Alias.repository_id, m.Alias.name)
            ):
                aliases[repository_id][alias] = number
        items = [
            RepoInfo(
                repo=f"{r.namespace}/{r.name}",
                latest_version=r.latest_version,
                created_at=r.created_at,
                aliases=aliases[r.id],
            )
            for r in page
        ]
        nxt = str(rows[limit - 1].id) if len(rows) > limit else None
    return Page[RepoInfo](items=items, next_cursor=nxt)


def latest_facets(reg: Registry, *, principal: Principal) -> dict[str, list[str]]:
    """The tasks, base names and PEFT types among the latest versions `principal` may read (the
    repositories page's filter choices): one query, where the page read them from a second scan
    of up to 2,000 summaries."""
    q = (
        select(m.Version.task, m.Version.base_model_name, m.Version.peft_type)
        .distinct()
        .join(m.Repository, m.Repository.id == m.Version.repository_id)
        .where(m.Version.number == m.Repository.latest_version, readable(principal, m.Repository.namespace))
    )
    with read_only(reg.sessions) as session:
        rows = session.execute(q).all()
    return {
        "task": sorted({task for task, _, _ in rows if task}),
        "base": sorted({base for _, base, _ in rows if base}),
        "peft_type": sorted({peft for _, _, peft in rows}),
    }
