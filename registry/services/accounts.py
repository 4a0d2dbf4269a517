"""Users, grants, tokens and namespace visibility: the service functions `adapters user|grant|token|
namespace` call, in embedded/operator mode directly and over HTTP through routes (audited). Who a
token stands for is `registry.access.authentication`'s.

Every function takes the acting principal (`OPERATOR` when the caller holds the database):
- add a user, list users: global admin;
- grant or remove a role in NS, set NS's visibility: admin of NS;
- create a token for a user: that user (with a token that is not read-only; the new token never
  reaches beyond the one used) or a global admin; list and revoke tokens: their user or a global admin,
  and through a token narrowed to namespaces only the tokens no wider than it.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import bounds
from registry.access import tokens
from registry.access.authentication import grants_of
from registry.access.checks import require_namespace
from registry.access.entities import GrantInfo, NamespaceInfo, TokenInfo, UserInfo
from registry.access.policy import NamespaceRes, global_admin, may, within_scope
from registry.access.principal import ROLES, Principal, Role
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated
from registry.refs import parse_repo
from registry.services import audit
from registry.services.context import Registry
from registry.services.timeutil import now

log = logging.getLogger(__name__)
USER_NAME_LEN = 64
RESERVED_NAMES = frozenset({"anonymous", "operator"})


def check_user_name(name: str) -> str:
    """Refuse names that cannot be stored or printed safely, and names that pass for another:
    not in NFKC form (`ａlice`, `ｍ𝐚llory`), or mixing scripts a reader confuses (`аlice` with a
    Cyrillic а). A name written wholly in one script (`алиса`, `名前`) is accepted."""
    bounds.check_text(name, "user name", USER_NAME_LEN)
    if not name or name != name.strip() or any(c.isspace() for c in name) or "/" in name:
        raise BadRequest(
            f"user name {name!r}: no spaces or '/', 1 to {USER_NAME_LEN} characters", field="name"
        )
    if name_key(name) in RESERVED_NAMES:
        raise BadRequest(f"user name {name!r} is reserved", field="name")
    unassigned = next((c for c in name if unicodedata.category(c) == "Cn"), None)
    if unassigned is not None:
        raise BadRequest(
            f"user name {name!r} contains the unassigned code point U+{ord(unassigned):04X}", field="name"
        )
    compat = unicodedata.normalize("NFKC", name)
    if compat != name:
        raise BadRequest(
            f"user name {name!r} is not in NFKC form (it reads as {compat!r}); use {compat!r}",
            field="name",
        )
    scripts = _scripts(name)
    if len(scripts) > 1 and not any(scripts <= group for group in _SCRIPT_GROUPS):
        raise BadRequest(
            f"user name {name!r} mixes the scripts {' and '.join(sorted(s.title() for s in scripts))}, "
            "so it can pass for another name; write it in one script",
            field="name",
        )
    return name


def name_key(name: str) -> str:
    """Equal for user names a reader cannot tell apart by case or compatibility form."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


# Scripts that one name may combine (Unicode TS #39, "highly restrictive"): Latin with the scripts
# Japanese, Chinese and Korean are written in together. Any other mix is refused.
_SCRIPT_GROUPS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPT_OF_PREFIX = {"CJK": "HAN", "IDEOGRAPHIC": "HAN", "KATAKANA-HIRAGANA": "KATAKANA"}


def _scripts(name: str) -> set[str]:
    """The scripts of the letters of `name`, read from their Unicode names (`CYRILLIC SMALL LETTER
    A`); digits, punctuation, symbols, combining marks and modifier letters belong to none."""
    out: set[str] = set()
    for ch in name:
        if not unicodedata.category(ch).startswith("L"):
            continue
        prefix = unicodedata.name(ch, "").split(" ", 1)[0]
        if prefix and prefix != "MODIFIER":
            out.add(_SCRIPT_OF_PREFIX.get(prefix, prefix))
    return out


def check_namespace(namespace: str) -> str:
    parse_repo(f"{namespace}/x")  # the namespace rule of repository names
    return namespace


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise BadRequest(f"role {role!r}: one of {', '.join(ROLES)}", field="role")
    return role  # type: ignore[return-value]


def _require_global_admin(p: Principal, what: str) -> None:
    if not global_admin(p, "admin"):
        if p.is_anonymous:
            raise Unauthenticated(f"{what} needs a token")
        raise Forbidden(f"{what}: global admins only", action="admin")


def _user(session: Session, name: str) -> m.User:
    row = session.scalars(select(m.User).where(m.User.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no user {name!r}; add one with `adapters user add {name}`")
    return row


def _user_info(session: Session, row: m.User) -> UserInfo:
    return UserInfo(
        id=row.id,
        name=row.name,
        admin=row.admin,
        created_at=row.created_at,
        grants=dict(sorted(grants_of(session, row.id).items())),
    )


def add_user(reg: Registry, name: str, admin: bool = False, *, principal: Principal) -> UserInfo:
    """Raises Conflict when the name is taken."""
    _require_global_admin(principal, "adding a user")
    check_user_name(name)
    with unit_of_work(reg.sessions) as session:
        if session.scalars(select(m.User.id).where(m.User.name == name)).first() is not None:
            raise Conflict(f"user {name!r} already exists")
        key = name_key(name)
        like = next((n for n in session.scalars(select(m.User.name)) if name_key(n) == key), None)
        if like is not None:
            raise Conflict(f"user {name!r} is the existing user {like!r} but for case or compatibility forms")
        row = m.User(name=name, admin=admin, created_at=now())
        session.add(row)
        session.flush()
        audit.record(session, principal, "user.add", f"user:{name}", {"admin": admin})
        return _user_info(session, row)


def list_users(reg: Registry, *, principal: Principal) -> list[UserInfo]:
    _require_global_admin(principal, "listing users")
    with unit_of_work(reg.sessions) as session:
        return [_user_info(session, r) for r in session.scalars(select(m.User).order_by(m.User.name))]


def has_users(reg: Registry) -> bool:
    """Whether any user exists (`adapters serve` prints how to make the first admin when not)."""
    with unit_of_work(reg.sessions) as session:
        return session.scalars(select(m.User.id).limit(1)).first() is not None


def grant(reg: Registry, user: str, namespace: str, role: str | None, *, principal: Principal) -> GrantInfo:
    """Give `user` `role` (read, write or admin) in `namespace`, replacing their role there;
    `role=None` removes it."""
    check_namespace(namespace)
    checked = check_role(role) if role is not None else None
    with unit_of_work(reg.sessions) as session:
        require_namespace(
            session, principal, "admin", namespace, lambda: NotFound(f"no namespace {namespace!r}")
        )
        row = _user(session, user)
        existing = session.get(m.Grant, (row.id, namespace))
        if checked is None:
            if existing is not None:
                session.delete(existing)
        elif existing is None:
            session.add(m.Grant(user_id=row.id, namespace=namespace, role=checked, created_at=now()))
        else:
            existing.role = checked
        audit.record(session, principal, "grant", f"user:{user}", {"role": checked}, namespace=namespace)
        return GrantInfo(user=user, namespace=namespace, role=checked)


def set_namespace_visibility(
    reg: Registry, namespace: str, public: bool, *, principal: Principal
) -> NamespaceInfo:
    """Public: anyone, anonymous callers included, may read it. Namespaces are private by default."""
    check_namespace(namespace)
    with unit_of_work(reg.sessions) as session:
        require_namespace(
            session, principal, "admin", namespace, lambda: NotFound(f"no namespace {namespace!r}")
        )
        row = session.get(m.Namespace, namespace)
        if row is None:
            session.add(m.Namespace(name=namespace, public=public, updated_at=now()))
        else:
            row.public = public
            row.updated_at = now()
        audit.record(
            session,
            principal,
            "namespace.set",
            f"namespace:{namespace}",
            {"public": public},
            namespace=namespace,
        )
        return NamespaceInfo(name=namespace, public=public)


def list_namespaces(reg: Registry, *, principal: Principal) -> list[NamespaceInfo]:
    """Namespaces with a visibility set (every other one is private) that `principal` may read:
    a private namespace's name is not shown to a caller who may not read it."""
    with unit_of_work(reg.sessions) as session:
        rows = session.scalars(select(m.Namespace).order_by(m.Namespace.name))
        return [
            NamespaceInfo(name=r.name, public=r.public)
            for r in rows
            if may(principal, "read", NamespaceRes(r.name, r.public))
        ]


def _token_info(row: m.Token, user: str) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=user,
        name=row.name,
        prefix=row.prefix,
        read_only=row.read_only,
        namespaces=row.namespaces,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        created_at=row.created_at,
    )


def create_token(
    reg: Registry,
    user: str,
    *,
    read_only: bool = False,
    namespaces: Iterable[str] | None = None,
    expires_in: timedelta | None = None,
    name: str | None = None,
    principal: Principal,
) -> tuple[str, TokenInfo]:
    """A new token for `user`: the secret (shown once, never stored) and its description.

    A token only narrows its user's rights: `read_only`, `namespaces` (only those), `expires_in`.
    A token made with a token that expires expires no later than it (capped: with no
    `expires_in`, when that one does).
    """
    scope = sorted({check_namespace(ns) for ns in namespaces}) if namespaces is not None else None
    if name is not None:
        bounds.check_text(name, "token name", bounds.LABEL_LEN)
    if expires_in is not None and expires_in <= timedelta(0):
        raise BadRequest("a token's lifetime must be positive", field="expires")
    with unit_of_work(reg.sessions) as session:
        row = _user(session, user)
        if not global_admin(principal, "admin"):
            if principal.user_id != row.id or principal.read_only:
                _refuse_other(principal, "creating a token for another user")
            if principal.namespaces is not None:  # a scoped token makes only narrower ones
                if scope is None or not set(scope) <= principal.namespaces:
                    raise Forbidden("a namespace-scoped token may only create tokens within its namespaces")
        secret = tokens.generate()
        token = m.Token(
            user_id=row.id,
            name=name,
            prefix=tokens.display_prefix(secret),
            secret_hash=tokens.hash_secret(secret),
            read_only=read_only,
            namespaces=scope,
            expires_at=_capped_expiry(principal, expires_in),
            created_at=now(),
        )
        session.add(token)
        session.flush()
        audit.record(
            session,
            principal,
            "token.create",
            f"token:{token.id}",
            {"user": row.name, "prefix": token.prefix, "read_only": read_only, "namespaces": scope},
        )
        return secret, _token_info(token, row.name)


def _capped_expiry(principal: Principal, expires_in: timedelta | None) -> datetime | None:
    """The new token's expiry: as asked, but never past the expiry of the token used."""
    wanted = now() + expires_in if expires_in is not None else None
    cap = principal.expires_at
    if cap is None:
        return wanted
    return cap if wanted is None else min(wanted, cap)


def _refuse_other(p: Principal, what: str) -> None:
    if p.is_anonymous:
        raise Unauthenticated(f"{what} needs a token")
    raise Forbidden(f"{what}: only that user or a global admin", action="admin")


def list_tokens(reg: Registry, user: str | None = None, *, principal: Principal) -> list[TokenInfo]:
    """Tokens of `user` (default: the principal's own; every user's for the operator), newest first."""
    with unit_of_work(reg.sessions) as session:
        q = select(m.Token, m.User.name).join(m.User, m.User.id == m.Token.user_id)
        if user is not None:
            row = _user(session, user)
            if not global_admin(principal, "read") and principal.user_id != row.id:
                _refuse_other(principal, "listing another user's tokens")
            q = q.where(m.Token.user_id == row.id)
        elif not global_admin(principal, "read"):
            if principal.user_id is None:
                _refuse_other(principal, "listing tokens")
            q = q.where(m.Token.user_id == principal.user_id)
        return [
            _token_info(t, u)
            for t, u in session.execute(q.order_by(m.Token.id.desc()))
            if _manages(principal, t)
        ]


def _manages(principal: Principal, token: m.Token) -> bool:
    """Whether `principal`, the token's user or a global admin, may see and revoke `token`: through
    a token narrowed to namespaces, only one no wider than itself (global admins are not narrowed)."""
    return within_scope(principal, frozenset(token.namespaces) if token.namespaces is not None else None)


def revoke_token(reg: Registry, token_id: int, *, principal: Principal) -> TokenInfo:
    """Revoke at once (idempotent: a revoked token keeps its first revocation time)."""
    with unit_of_work(reg.sessions) as session:
        found = session.execute(
            select(m.Token, m.User.name)
            .join(m.User, m.User.id == m.Token.user_id)
            .where(m.Token.id == token_id)
        ).one_or_none()
        own = found is not None and principal.user_id == found[0].user_id and _manages(principal, found[0])
        if found is None or not (global_admin(principal, "admin") or own):
            if principal.is_anonymous:
                raise Unauthenticated("revoking a token needs a token")
            raise NotFound(f"no token {token_id}")
        token, user = found
        if principal.read_only and not principal.is_operator:
            raise Forbidden("a read-only token may not revoke tokens", action="write")
        if token.revoked_at is None:
            token.revoked_at = now()
            audit.record(session, principal, "token.revoke", f"token:{token.id}", {"user": user})
        return _token_info(token, user)
