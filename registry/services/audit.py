"""The audit log: every change, recorded in the transaction that makes it (so a change that rolls
back leaves no event, and no change commits without one), and read back with filters.

Who may read it: a global admin (and the operator) every event; a user who administers
namespaces, the events of those namespaces; anyone else is refused (401 anonymous, 403 others).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.access.policy import global_admin, role_in
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import read_only
from registry.entities import AuditEventInfo, AuditFilter, Page
from registry.errors import BadRequest, Forbidden, Unauthenticated
from registry.refs import parse_repo
from registry.services.context import Registry
from registry.services.timeutil import now

LOCAL = "local"
"""The address recorded for calls made on this machine (no network hop)."""
MAX_LIMIT = 500


def record(
    session: Session,
    principal: Principal,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    *,
    namespace: str | None = None,
    repo: str | None = None,
) -> None:
    """Add one event to the caller's transaction. `repo` ("ns/name") implies its namespace."""
    if repo is not None and namespace is None:
        namespace = repo.split("/", 1)[0]
    session.add(
        m.AuditEvent(
            at=now(),
            actor=principal.name[:128],
            user_id=principal.user_id,
            token_id=principal.token_id,
            address=(principal.address or LOCAL)[:64],
            action=action,
            target=target[:512],
            namespace=namespace,
            repo=repo,
            details=details,
        )
    )


def _administered(principal: Principal) -> frozenset[str] | None:
    """The namespaces whose events `principal` reads; None: all."""
    if global_admin(principal, "read"):
        return None
    if principal.is_anonymous:
        raise Unauthenticated("the audit log needs a token")
    names = frozenset(ns for ns in principal.grants if role_in(principal, ns) == "admin")
    if principal.admin and principal.namespaces:
        names |= principal.namespaces
    if not names:
        raise Forbidden(
            f"{principal.name} administers no namespace: the audit log is for admins", action="admin"
        )
    return names


def list_events(
    reg: Registry,
    flt: AuditFilter,
    limit: int = 100,
    cursor: str | None = None,
    *,
    principal: Principal,
) -> Page[AuditEventInfo]:
    """Newest first, `limit` per page; `cursor` is the last id of the previous page."""
    allowed = _administered(principal)
    limit = max(1, min(limit, MAX_LIMIT))
    q = select(m.AuditEvent).order_by(m.AuditEvent.id.desc()).limit(limit + 1)
    if allowed is not None:
        q = q.where(m.AuditEvent.namespace.in_(sorted(allowed)))
    if flt.repo is not None:
        q = q.where(m.AuditEvent.repo == str(parse_repo(flt.repo)))
    if flt.user is not None:
        q = q.where(m.AuditEvent.actor == flt.user)
    if flt.since is not None:
        q = q.where(m.AuditEvent.at >= flt.since)  # naive: UTC (registry.db.types.UTCDateTime)
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise BadRequest(f"invalid cursor {cursor!r}", field="cursor")
        q = q.where(m.AuditEvent.id < int(cursor))
    with read_only(reg.sessions) as session:
        rows = session.scalars(q).all()
        items = [_info(r) for r in rows[:limit]]
    return Page(items=items, next_cursor=str(rows[limit - 1].id) if len(rows) > limit else None)


def _info(row: m.AuditEvent) -> AuditEventInfo:
    return AuditEventInfo.model_validate(row)
