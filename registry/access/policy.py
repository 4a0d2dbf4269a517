"""The one permission check: may principal P do action A on resource R?

Actions: read < write < admin (each includes the ones before it). Resources: a namespace (an
adapter repository is its namespace's), a base name, a job, and, for blobs and uploads, the
helpers below that reduce to namespaces. The services look up the facts (visibility, the job's
submitter) and ask here; this module reads no database, so every rule is in one screen of code.

Rules:
- The operator (whoever holds the database, embedded mode) may do everything.
- A user's role in a namespace: admin when the user is a global admin, else their grant there.
  A token narrows it: `read_only` caps it at read; `namespaces` drops every other namespace.
- Read of a public namespace: everyone, anonymous callers included.
- A base name `ns/x` is namespace ns's; an un-namespaced name may be read by any authenticated
  user and registered (written) only by a global admin.
- A job: its submitter or a global admin reads it; cancelling is a write (not with a read-only
  token). A job belongs to every namespace it reads or writes: a token narrowed to namespaces
  reaches only the jobs all of whose namespaces are among its own.
- A token: its user manages it (global admins every one); a token narrowed to namespaces S only
  the tokens narrowed to a subset of S, never a wider one (`within_scope`).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.access.principal import RANK, Action, Principal, Role


@dataclass(frozen=True)
class NamespaceRes:
    name: str
    public: bool = False


@dataclass(frozen=True)
class BaseNameRes:
    name: str
    public: bool = False
    """Whether the name's namespace is public (ignored for an un-namespaced name)."""

    @property
    def namespace(self) -> str | None:
        ns, sep, _ = self.name.partition("/")
        return ns if sep else None


@dataclass(frozen=True)
class JobRes:
    user_id: int | None
    """The submitter; None: the operator."""
    namespaces: frozenset[str] | None = None
    """Every namespace the job reads or writes; None (failing closed): it also reaches beyond
    namespaces (an un-namespaced base name it writes) or its parameters cannot be read, so no
    narrowed token reaches it."""


Resource = NamespaceRes | BaseNameRes | JobRes


def role_in(p: Principal, namespace: str) -> Role | None:
    """The principal's effective role in `namespace`, public visibility aside."""
    if p.is_operator:
        return "admin"
    if p.is_anonymous:
        return None
    if p.namespaces is not None and namespace not in p.namespaces:
        return None
    role: Role | None = "admin" if p.admin else p.grants.get(namespace)
    if role is not None and p.read_only:
        return "read"
    return role


def global_admin(p: Principal, action: Action) -> bool:
    """Whether `p` may do `action` anywhere: the operator, or an admin's token not narrowed."""
    if p.is_operator:
        return True
    return p.admin and p.namespaces is None and (action == "read" or not p.read_only)


def may(p: Principal, action: Action, res: Resource) -> bool:
    if p.is_operator:
        return True
    if isinstance(res, NamespaceRes):
        if action == "read" and res.public:
            return True
        role = role_in(p, res.name)
        return role is not None and RANK[role] >= RANK[action]
    if isinstance(res, BaseNameRes):
        ns = res.namespace
        if ns is not None:
            return may(p, action, NamespaceRes(ns, res.public))
        if action == "read":
            return not p.is_anonymous
        return global_admin(p, action)
    if isinstance(res, JobRes):
        if global_admin(p, action):
            return True
        own = not p.is_anonymous and res.user_id is not None and res.user_id == p.user_id
        return own and within_scope(p, res.namespaces) and (action == "read" or not p.read_only)
    raise TypeError(f"unknown resource {res!r}")


def within_scope(p: Principal, namespaces: frozenset[str] | None) -> bool:
    """Whether `p`'s token reaches all of `namespaces`: a job's, or another token's scope (None:
    beyond every namespace; a token that is not narrowed). A token that is not narrowed reaches
    everything; one narrowed to no namespace, only what is narrowed to none."""
    if p.namespaces is None:
        return True
    return namespaces is not None and namespaces <= p.namespaces


def may_write_somewhere(p: Principal) -> bool:
    """Blob uploads and missing-blob checks: for a writer of some namespace (the bytes become
    visible only through a commit, which is checked on its own)."""
    if global_admin(p, "write"):
        return True
    if p.is_anonymous or p.read_only:
        return False
    return any(RANK[role_in(p, ns) or "read"] >= RANK["write"] for ns in p.grants) or (
        p.admin and bool(p.namespaces)
    )


def readable_namespaces(p: Principal) -> frozenset[str] | None:
    """The namespaces `p` reads through its rights (public ones aside); None: every namespace."""
    if global_admin(p, "read"):
        return None
    if p.is_anonymous:
        return frozenset()
    if p.admin:
        return p.namespaces or frozenset()
    names = frozenset(p.grants)
    return names if p.namespaces is None else names & p.namespaces
