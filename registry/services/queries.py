"""Listing and searching versions and repositories, paginated by keyset (limit + 1)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import defer, selectinload

from registry.access.checks import readable
from registry.access.principal import Principal
from registry.bounds import PAGE_MAX, row_cursor
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import Page, RepoInfo, VersionFilter, VersionSummary
from registry.errors import BadRequest
from registry.refs import parse_repo
from registry.services.context import Registry
from registry.services.versions import version_summary

MAX_LIMIT = PAGE_MAX


def _cursor(raw: str | None) -> int | None:
    if raw is None:
        return None
    after = row_cursor(raw)
    if after is None:
        raise BadRequest(f"invalid cursor {raw[:40]!r}: pass a next_cursor from a previous page")
    return after


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def list_versions(
    reg: Registry,
    flt: VersionFilter,
    limit: int = 50,
    cursor: str | None = None,
    *,
    principal: Principal,
) -> Page[VersionSummary]:
    """Newest first, as summaries (`resolve` gives a version whole). Filters: repository, task,
    peft_type, base model name; latest_only per repo. Only namespaces `principal` may read."""
    limit = _check_limit(limit)
    q = select(m.Version).join(m.Repository, m.Repository.id == m.Version.repository_id)
    q = q.where(readable(principal, m.Repository.namespace))
    if flt.repo:
        repo = parse_repo(flt.repo)
        q = q.where(m.Repository.namespace == repo.namespace, m.Repository.name == repo.name)
    if flt.task:
        q = q.where(m.Version.task == flt.task)
    if flt.peft_type:
        q = q.where(m.Version.peft_type == flt.peft_type.upper())
    if flt.base:
        q = q.where(m.Version.base_model_name == flt.base)
    if flt.latest_only:
        q = q.where(m.Version.number == m.Repository.latest_version)
    after = _cursor(cursor)
    if after is not None:
        q = q.where(m.Version.id < after)
    q = q.order_by(m.Version.id.desc()).limit(limit + 1)
    with unit_of_work(reg.sessions) as session:
        # The whole documents stay in the database: a summary never reads them.
        opts = (defer(m.Version.config), defer(m.Version.manifest), selectinload(m.Version.evals))
        rows = list(session.scalars(q.options(*opts)))
        items = [version_summary(session, v) for v in rows[:limit]]
        nxt = str(rows[limit - 1].id) if len(rows) > limit else None
    return Page[VersionSummary](items=items, next_cursor=nxt)


def list_repos(
    reg: Registry, limit: int = 50, cursor: str | None = None, *, principal: Principal
) -> Page[RepoInfo]:
    limit = _check_limit(limit)
    # Listed: a repository with a version, or one that never had any (the Hub's create_repo made
    # it, latest_version 0); one whose versions were all deleted is a tombstone, not listed.
    q = select(m.Repository).where(
        or_(m.Repository.latest_version > 0, m.Repository.version_counter == 0),
        readable(principal, m.Repository.namespace),
    )
    after = _cursor(cursor)
    if after is not None:
        q = q.where(m.Repository.id > after)
    q = q.order_by(m.Repository.id).limit(limit + 1)
    with unit_of_work(reg.sessions) as session:
        rows = list(session.scalars(q))
        items = []
        for r in rows[:limit]:
            aliases = session.execute(
                select(m.Alias.name, m.Version.number)
                .join(m.Version, m.Version.id == m.Alias.version_id)
                .where(m.Alias.repository_id == r.id)
            ).all()
            items.append(
                RepoInfo(
                    repo=f"{r.namespace}/{r.name}",
                    latest_version=r.latest_version,
                    created_at=r.created_at,
                    aliases={a: n for a, n in aliases},
                )
            )
        nxt = str(rows[limit - 1].id) if len(rows) > limit else None
    return Page[RepoInfo](items=items, next_cursor=nxt)
