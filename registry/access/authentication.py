"""Who a caller is: a bearer token looked up (stored hashed) and turned into a Principal, the
principal a job acts as when it publishes, and the description `whoami` prints.

Administration (users, grants, tokens, namespace visibility) is a service:
`registry.services.accounts`. This module stands below the services and imports none of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.access import tokens
from registry.access.entities import WhoAmI
from registry.access.principal import Principal, Role
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.errors import Unauthenticated

LAST_USED_GRANULARITY = timedelta(minutes=5)
"""last_used_at is written at most this often per token: not a write on every request."""


class Database(Protocol):
    """What authentication needs of a registry (`registry.services.context.Registry` has it)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...


def grants_of(session: Session, user_id: int) -> dict[str, Role]:
    """namespace -> the user's role there."""
    rows = session.execute(select(m.Grant.namespace, m.Grant.role).where(m.Grant.user_id == user_id))
    return {ns: role for ns, role in rows}  # type: ignore[misc]


def authenticate(reg: Database, secret: str) -> Principal:
    """The principal a bearer token stands for.

    Raises:
        Unauthenticated: malformed, unknown, expired or revoked (one message for all, naming only
            the reason's kind; never the secret).
    """
    if not tokens.is_well_formed(secret):
        raise Unauthenticated("invalid token")
    prefix = tokens.display_prefix(secret)
    # Every request of a server pays for this, so it is one round trip: token, user and grants in
    # one Core statement on a connection in autocommit (no BEGIN/COMMIT), and last_used_at written
    # only once per LAST_USED_GRANULARITY. Three ORM reads in a transaction cost 1.1 ms per
    # request (bench/load.py measures the difference with and without a token).
    t, g, u = m.Token.__table__, m.Grant.__table__, m.User.__table__
    stmt = (
        select(
            t.c.id,
            t.c.secret_hash,
            t.c.revoked_at,
            t.c.expires_at,
            t.c.last_used_at,
            t.c.read_only,
            t.c.namespaces,
            t.c.prefix,
            u.c.id.label("uid"),
            u.c.name,
            u.c.admin,
            g.c.namespace.label("gns"),
            g.c.role,
        )
        .join(u, u.c.id == t.c.user_id)
        .outerjoin(g, g.c.user_id == u.c.id)
        .where(t.c.prefix == prefix)
    )
    with reg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        rows = [r for r in conn.execute(stmt) if tokens.matches(secret, r.secret_hash)]
    if not rows:
        raise Unauthenticated("invalid token")
    row, now_ = rows[0], datetime.now(UTC)
    if row.revoked_at is not None:
        raise Unauthenticated(f"token {row.prefix}... was revoked")
    expires = row.expires_at
    if expires is not None and expires <= now_:
        raise Unauthenticated(f"token {row.prefix}... expired")
    last = row.last_used_at
    if last is None or now_ - last > LAST_USED_GRANULARITY:
        with unit_of_work(reg.sessions) as session:
            session.execute(update(m.Token).where(m.Token.id == row.id).values(last_used_at=now_))
    return Principal(
        kind="user",
        name=row.name,
        user_id=row.uid,
        admin=row.admin,
        grants={r.gns: r.role for r in rows if r.gns is not None},
        token_id=row.id,
        read_only=row.read_only,
        namespaces=frozenset(row.namespaces) if row.namespaces is not None else None,
        expires_at=expires,
    )


def job_principal(session: Session, user_id: int | None, token_id: int | None, name: str) -> Principal:
    """Who a job acts as when it publishes: its submitter with today's grants, narrowed as the
    token it was submitted with (a revoked token or a deleted user: nothing but anonymous reads).
    Expiry is not applied: a job may outlive a short token, as it was allowed when submitted."""
    if user_id is None:
        return Principal.operator(name)
    user = session.get(m.User, user_id)
    token = session.get(m.Token, token_id) if token_id is not None else None
    if user is None or (token_id is not None and (token is None or token.revoked_at is not None)):
        return Principal.anonymous()
    return Principal(
        kind="user",
        name=user.name,
        user_id=user.id,
        admin=user.admin,
        grants=grants_of(session, user.id),
        token_id=token_id,
        read_only=bool(token and token.read_only),
        namespaces=frozenset(token.namespaces) if token and token.namespaces is not None else None,
        expires_at=token.expires_at if token is not None else None,
    )


def whoami(principal: Principal) -> WhoAmI:
    return WhoAmI(
        kind=principal.kind,
        name=principal.name,
        admin=principal.admin or principal.is_operator,
        grants=dict(sorted(principal.grants.items())),
        token_id=principal.token_id,
        read_only=principal.read_only,
        namespaces=sorted(principal.namespaces) if principal.namespaces is not None else None,
    )
