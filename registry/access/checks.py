"""The policy applied inside a service's unit of work: look up the facts a rule needs (namespace
visibility, which versions and bases list a blob), ask `policy.may`, and refuse the way the API
answers: may not read -> the resource's own NotFound (as if it did not exist); may read but not do
this -> Forbidden; an anonymous caller asked to do more than read -> Unauthenticated.

The one way a service asks "may P do A?": these checks, in the words of the resources they guard
(a repository, a base, a blob, a job); the rules themselves are `policy`'s."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import ColumnElement, exists, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from registry.access.policy import (
    BaseNameRes,
    NamespaceRes,
    Resource,
    global_admin,
    may,
    may_write_somewhere,
    readable_namespaces,
)
from registry.access.principal import Action, Principal
from registry.db import models as m
from registry.errors import Forbidden, NotFound, RegistryError, Unauthenticated
from registry.refs import RepoName


def is_public(session: Session, namespace: str) -> bool:
    row = session.get(m.Namespace, namespace)
    return bool(row is not None and row.public)


def namespace_res(session: Session, namespace: str) -> NamespaceRes:
    return NamespaceRes(namespace, is_public(session, namespace))


def base_name_res(session: Session, name: str) -> BaseNameRes:
    ns, sep, _ = name.partition("/")
    return BaseNameRes(name, bool(sep) and is_public(session, ns))


def refuse(p: Principal, action: Action, res: Resource, not_found: Callable[[], RegistryError]) -> None:
    """Raise the refusal for `p` not being allowed `action` on `res`."""
    if p.is_anonymous and action != "read":
        raise Unauthenticated(f"{action} needs a token: pass Authorization: Bearer <token>")
    if action != "read" and may(p, "read", res):
        where = getattr(res, "name", None)
        what = {NamespaceRes: "namespace ", BaseNameRes: "base name "}.get(type(res), "")
        raise Forbidden(
            f"you ({p.name}) may not {action} {what}{where or 'this'}", namespace=where, action=action
        )
    raise not_found()


def require(p: Principal, action: Action, res: Resource, not_found: Callable[[], RegistryError]) -> None:
    if not may(p, action, res):
        refuse(p, action, res, not_found)


def require_namespace(
    session: Session, p: Principal, action: Action, namespace: str, not_found: Callable[[], RegistryError]
) -> None:
    if p.is_operator:
        return
    require(p, action, namespace_res(session, namespace), not_found)


def require_base_name(
    session: Session, p: Principal, action: Action, name: str, not_found: Callable[[], RegistryError]
) -> None:
    if p.is_operator:
        return
    require(p, action, base_name_res(session, name), not_found)


def repo_not_found(repo: RepoName, ref: str | None = None) -> NotFound:
    """The answer for a repository that does not exist, or that the caller may not read."""
    return NotFound(f"repository {repo} does not exist", ref=ref or str(repo))


def require_reader_of(session: Session, principal: Principal, repo: RepoName, ref: str | None = None) -> None:
    require_namespace(session, principal, "read", repo.namespace, lambda: repo_not_found(repo, ref))


def write_not_found(repo: RepoName) -> NotFound:
    """The answer to a write in a namespace the caller may not read: the same whether the namespace
    (or the repository) exists or not, so it says what is true in both cases."""
    return NotFound(
        f"you may not write namespace {repo.namespace} (repository {repo}), or it does not exist",
        ref=str(repo),
    )


def require_writer_of(session: Session, principal: Principal, repo: RepoName) -> None:
    require_namespace(session, principal, "write", repo.namespace, lambda: write_not_found(repo))


def base_not_found(name: str) -> NotFound:
    return NotFound(f"no registered base model {name!r}; register it with `adapters base add`", base=name)


def require_on_base_name(session: Session, principal: Principal, action: Action, name: str) -> None:
    require_base_name(session, principal, action, name, lambda: base_not_found(name))


def require_writer(p: Principal) -> None:
    """Blob uploads and missing-blob checks: a writer of some namespace."""
    if may_write_somewhere(p):
        return
    if p.is_anonymous:
        raise Unauthenticated("uploads need a token: pass Authorization: Bearer <token>")
    raise Forbidden(f"{p.name} may not write to any namespace", action="write")


def readable(p: Principal, namespace_col: InstrumentedAttribute[str]) -> ColumnElement[bool]:
    """A WHERE clause keeping the rows whose namespace `p` may read: its own, and public ones."""
    names = readable_namespaces(p)
    if names is None:
        return true()
    public = exists().where(m.Namespace.name == namespace_col, m.Namespace.public)
    return or_(namespace_col.in_(sorted(names)), public) if names else public


def base_readable(session: Session, p: Principal, base_id: int) -> bool:
    """A base is readable when one of its names is; a base with no name: by the operator and
    global admins only (its fingerprint is no capability: anyone may compute one)."""
    if global_admin(p, "read"):
        return True
    names = session.scalars(select(m.BaseName.name).where(m.BaseName.base_model_id == base_id)).all()
    if not names:
        return False
    return any(may(p, "read", base_name_res(session, n)) for n in names)


def blob_readable(session: Session, p: Principal, digest: str) -> bool:
    """Whether `p` may read some version or uploaded base that lists the blob: content addressing
    is no way around permissions. A blob nothing lists is the operator's and global admins' only."""
    if global_admin(p, "read"):
        return True
    version_lists_it = session.scalar(
        select(m.Version.id)
        .join(m.VersionFile, m.VersionFile.version_id == m.Version.id)
        .join(m.Repository, m.Repository.id == m.Version.repository_id)
        .where(m.VersionFile.digest == digest, readable(p, m.Repository.namespace))
        .limit(1)
    )
    if version_lists_it is not None:
        return True
    attached_to = session.execute(  # a bundle attached to a version (readable with it) or a base
        select(m.VersionSignature.version_id, m.VersionSignature.base_id, m.Repository.namespace)
        .outerjoin(m.Version, m.Version.id == m.VersionSignature.version_id)
        .outerjoin(m.Repository, m.Repository.id == m.Version.repository_id)
        .where(m.VersionSignature.digest == digest)
    ).all()
    for version_id, base_id, namespace in attached_to:
        if version_id is not None and may(p, "read", namespace_res(session, namespace)):
            return True
        if base_id is not None and base_readable(session, p, base_id):
            return True
    # Bases list their files in a JSON manifest (few rows: only uploaded bases have one).
    for base_id, manifest in session.execute(
        select(m.BaseModel.id, m.BaseModel.manifest).where(m.BaseModel.manifest.is_not(None))
    ):
        files = (manifest or {}).get("files", [])
        if any(f.get("sha256") == digest for f in files) and base_readable(session, p, base_id):
            return True
    return False


def blobs_unusable(session: Session, p: Principal, digests: list[str]) -> list[str]:
    """The digests `p` may NOT reference in a commit: a blob is usable when `p` may read it, or
    uploaded its bytes (proved possession). Operator and global admins: every blob."""
    if global_admin(p, "write"):
        return []
    out = []
    for d in dict.fromkeys(digests):
        if blob_readable(session, p, d):
            continue
        uploaded = p.user_id is not None and session.get(m.BlobUpload, (d, p.user_id)) is not None
        if not uploaded:
            out.append(d)
    return out
