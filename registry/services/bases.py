"""Registered base models: fingerprints, names, module tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry import bounds
from registry.access.checks import (
    base_name_res,
    base_not_found,
    base_readable,
    blobs_unusable,
    require_on_base_name,
)
from registry.access.policy import BaseNameRes, global_admin, may
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import (
    BaseArchitecture,
    BaseInfo,
    BaseLayout,
    BaseNameInfo,
    BaseRegistration,
    FileInfo,
    ModuleInfo,
)
from registry.errors import (
    BadRequest,
    BaseNameTaken,
    BlobMissing,
    Forbidden,
    Unauthenticated,
    UnsafePath,
)
from registry.formats.compatibility import BaseView
from registry.formats.model_folder import modules_by_name
from registry.formats.paths import normalize_path
from registry.services import audit
from registry.services.blob_guard import guard_blobs
from registry.services.context import Registry
from registry.services.lineage_edges import checked_lineage, record_edges
from registry.services.names import refuse_repository_name
from registry.services.timeutil import now
from storage.base import DIGEST_RE


def register_base(
    reg: Registry,
    data: BaseRegistration,
    on_commit: Callable[[Session, BaseInfo], None] | None = None,
    *,
    principal: Principal,
) -> BaseInfo:
    """Record a base, or add names to one `principal` may change that has the same fingerprint.
    Idempotent. `on_commit` runs inside the same transaction (a worker's fenced job completion).

    Each name needs `principal` to write its namespace (`ns/x`), or to be a global admin (an
    un-namespaced name); a registration without names (a nameless base), a global admin. A
    fingerprint is a fact about bytes that no namespace owns: weights another namespace
    registered are registered again as a base of the caller's own, and the answer tells nothing
    of the other (`_existing`). Changing a base (a name again, with files or lineage) needs write
    on every name it already has. Uploaded files must be blobs `principal` may read or uploaded
    itself: storing the same bytes grants read on no other base that lists them."""
    with unit_of_work(reg.sessions) as session:
        for n in data.names:
            require_on_base_name(session, principal, "write", n.name)
        if not data.names:
            _require_global_admin(principal)
        unusable = set(blobs_unusable(session, principal, [f.sha256 for f in data.files or []]))
    for f in data.files or []:
        if normalize_path(f.path) != f.path:
            raise UnsafePath(f"path {f.path!r} is not in NFC form", path=f.path)
        info = reg.store.stat(f.sha256)
        if info is None or info.size != f.size or f.sha256 in unusable:
            raise BlobMissing(f"{f.path}: blob {f.sha256} is not in the store; upload it first", path=f.path)
    if data.fingerprint is not None and not DIGEST_RE.fullmatch(data.fingerprint):
        raise BadRequest(f"fingerprint {data.fingerprint!r} is not sha256:<hex>")
    with unit_of_work(reg.sessions) as session:
        guard_blobs(session, reg.store, [(f.path, f.sha256, f.size) for f in data.files or []])
        row = _existing(session, data, principal)
        fresh = row is None
        if row is None:
            row = _insert(session, data)
        else:
            _require_writer_of_base(session, principal, row, data.fingerprint or data.names[0].name)
            if data.files and row.manifest is None:
                row.manifest = {"files": [f.model_dump() for f in data.files]}
        for n in data.names:
            existing = session.get(m.BaseName, n.name)
            if existing is None:
                refuse_repository_name(session, n.name)
                session.add(m.BaseName(name=n.name, base_model_id=row.id, revision=n.revision))
            elif existing.base_model_id != row.id:
                raise BaseNameTaken(f"base name {n.name!r} already names another base model", name=n.name)
        edges: list[dict[str, Any]] = []
        if data.lineage and (fresh or row.lineage is None):
            # A claimed parent is indexed only when it exists and the caller may read it (as for
            # a pushed version's lineage): no one lists themselves among another's descendants.
            row.lineage, edges = checked_lineage(session, data.lineage, principal)
        session.flush()
        record_edges(session, row.lineage, child_base_id=row.id, edges=edges)
        registered = base_info(session, row, reader=principal)
        names = [n.name for n in data.names]
        audit.record(
            session,
            principal,
            "base.add",
            names[0] if names else (row.fingerprint or f"base #{row.id}"),
            {
                "names": names,
                "fingerprint": row.fingerprint,
                "uploaded_files": len(data.files or []),
                "derived": data.lineage is not None,
            },
            namespace=_namespace_of(names),
        )
        if on_commit is not None:
            on_commit(session, registered)
        return registered


def _require_global_admin(p: Principal) -> None:
    """A nameless base is the operator's and global admins' (nobody else may read it either)."""
    if global_admin(p, "write"):
        return
    if p.is_anonymous:
        raise Unauthenticated("registering a base needs a token: pass Authorization: Bearer <token>")
    raise Forbidden(f"{p.name} may not register a base without a name: give it one", action="write")


def _existing(session: Session, data: BaseRegistration, p: Principal) -> m.BaseModel | None:
    """The base a registration adds to, or None for a new one: the base one of its names already
    names when that base has the same fingerprint (registered again; a structure-only base under
    its name), else the first base with this fingerprint that `p` may change. Weights registered
    by others (another namespace's base, one `p` may only read) stay theirs: `p` gets a base of
    its own, and never learns whether they exist."""
    for n in data.names:
        named = _by_name(session, n.name)
        if named is not None and named.fingerprint == data.fingerprint:
            return named
    if data.fingerprint is None:
        return None
    same = session.scalars(
        select(m.BaseModel).where(m.BaseModel.fingerprint == data.fingerprint).order_by(m.BaseModel.id)
    ).all()
    return next((row for row in same if _may_change(session, p, row)), None)


def _base_names(session: Session, base_id: int) -> list[str]:
    return list(
        session.scalars(
            select(m.BaseName.name).where(m.BaseName.base_model_id == base_id).order_by(m.BaseName.name)
        )
    )


def _may_change(session: Session, p: Principal, row: m.BaseModel) -> bool:
    """Whether `p` may write every name the base has (a nameless base: a global admin)."""
    names = _base_names(session, row.id)
    if not names:
        return global_admin(p, "write")
    return all(may(p, "write", base_name_res(session, n)) for n in names)


def _require_writer_of_base(session: Session, p: Principal, row: m.BaseModel, text: str) -> None:
    """Changing an existing base (adding a name, its files, its lineage) needs write on every
    name it already has (a nameless one: global admin). `text` names it as the caller did; a
    name of it in a namespace `p` may not read is not told."""
    if p.is_operator:
        return
    if not base_readable(session, p, row.id):
        raise base_not_found(text)
    names = _base_names(session, row.id)
    if not names:
        _require_global_admin(p)
    for name in names:
        res = base_name_res(session, name)
        if may(p, "write", res):
            continue
        if may(p, "read", res):
            require_on_base_name(session, p, "write", name)  # Forbidden, naming it
        raise Forbidden(f"{p.name} may not change base {text!r}", action="write")


def _namespace_of(names: list[str]) -> str | None:
    """The namespace of the first namespaced name (its admins read the event), if any."""
    return next((n.split("/", 1)[0] for n in names if "/" in n), None)


def _insert(session: Session, data: BaseRegistration) -> m.BaseModel:
    row = m.BaseModel(
        fingerprint=data.fingerprint,
        structure_signature=data.structure_signature,
        **data.architecture().model_dump(),
        config=data.config,
        manifest={"files": [f.model_dump() for f in data.files]} if data.files else None,
        lineage=data.lineage,
        created_at=now(),
    )
    session.add(row)
    session.flush()
    session.add_all(m.BaseModule(base_model_id=row.id, **mod.model_dump()) for mod in data.modules)
    return row


def _by_name(session: Session, name: str) -> m.BaseModel | None:
    return session.scalars(
        select(m.BaseModel)
        .join(m.BaseName, m.BaseName.base_model_id == m.BaseModel.id)
        .where(m.BaseName.name == name)
    ).one_or_none()


def find_base(session: Session, text: str, reader: Principal | None) -> m.BaseModel | None:
    """A base by fingerprint (sha256:...) or by one of its names; None when unknown.

    With `reader`, only a base it may read (else None, as for an unknown one). Several bases may
    share a fingerprint (each namespace registers the weights under its own names): the reader's
    own (one with a name it may write) comes first, then any it may read; without `reader`, the
    first registered."""
    bounds.check_text(text, "base", 4096)
    if not text.startswith("sha256:"):
        row = _by_name(session, text)
        if row is None or reader is None or base_readable(session, reader, row.id):
            return row
        return None
    same = session.scalars(
        select(m.BaseModel).where(m.BaseModel.fingerprint == text).order_by(m.BaseModel.id)
    ).all()
    if reader is None or global_admin(reader, "read"):
        return same[0] if same else None
    readable = [row for row in same if base_readable(session, reader, row.id)]
    own = (row for row in readable if _writes_a_name(session, reader, row))
    return next(own, readable[0] if readable else None)


def _writes_a_name(session: Session, p: Principal, row: m.BaseModel) -> bool:
    return any(may(p, "write", base_name_res(session, n)) for n in _base_names(session, row.id))


def resolve_base(session: Session, text: str, reader: Principal | None) -> m.BaseModel:
    """As `find_base`; NotFound when there is none (for `reader`: none it may read)."""
    row = find_base(session, text, reader)
    if row is None:
        raise base_not_found(text)
    return row


def readable_base_names(session: Session, reader: Principal, names: Iterable[str]) -> list[str]:
    """The base names `reader` may read (a name in a namespace it may not read is not shown).
    One query for the public namespaces among theirs, whatever their number (asking
    `base_name_res` name by name cost one each: the identity map does not keep a row nobody
    holds)."""
    names = list(names)
    if reader.is_operator:
        return names
    spaces = {n.partition("/")[0] for n in names if "/" in n}
    public = (
        set(session.scalars(select(m.Namespace.name).where(m.Namespace.name.in_(spaces), m.Namespace.public)))
        if spaces
        else set()
    )

    def res(name: str) -> BaseNameRes:
        ns, sep, _ = name.partition("/")
        return BaseNameRes(name, bool(sep) and ns in public)

    return [n for n in names if may(reader, "read", res(n))]


def base_view(session: Session, row: m.BaseModel, *, reader: Principal) -> BaseView:
    """The base's module table; labelled with its first name `reader` may read."""
    modules = session.scalars(select(m.BaseModule).where(m.BaseModule.base_model_id == row.id)).all()
    names = session.scalars(
        select(m.BaseName.name).where(m.BaseName.base_model_id == row.id).order_by(m.BaseName.name)
    ).all()
    shown = readable_base_names(session, reader, names)
    return BaseView(
        label=shown[0] if shown else (row.fingerprint or f"#{row.id}")[:19],
        arch=BaseArchitecture.of(row),
        modules=modules_by_name(modules),
    )


def base_info(
    session: Session,
    row: m.BaseModel,
    with_files: bool = False,
    module_count: int | None = None,
    *,
    reader: Principal,
) -> BaseInfo:
    """The base as an entity, with the names `reader` may read; pass `module_count` when the
    caller already loaded the module table."""
    rows = session.scalars(
        select(m.BaseName).where(m.BaseName.base_model_id == row.id).order_by(m.BaseName.name)
    ).all()
    shown = set(readable_base_names(session, reader, [n.name for n in rows]))
    count = module_count
    if count is None:
        count = session.scalar(
            select(func.count()).select_from(m.BaseModule).where(m.BaseModule.base_model_id == row.id)
        )
    return _info(row, [n for n in rows if n.name in shown], count or 0, with_files)


def _info(row: m.BaseModel, names: Sequence[m.BaseName], module_count: int, with_files: bool) -> BaseInfo:
    files = [FileInfo(**f) for f in row.manifest["files"]] if row.manifest and with_files else None
    return BaseInfo(
        id=row.id,
        names=[BaseNameInfo(name=n.name, revision=n.revision) for n in names],
        fingerprint=row.fingerprint,
        structure_signature=row.structure_signature,
        **BaseArchitecture.of(row).model_dump(),
        uploaded=row.manifest is not None,
        module_count=module_count,
        created_at=row.created_at,
        files=files,
        lineage=row.lineage,
    )


def get_base(reg: Registry, text: str, *, principal: Principal) -> BaseInfo:
    """A base by name or fingerprint; NotFound when unknown or not readable by `principal`."""
    with unit_of_work(reg.sessions) as session:
        row = resolve_base(session, text, principal)
        return base_info(session, row, with_files=True, reader=principal)


def list_bases(reg: Registry, *, principal: Principal) -> list[BaseInfo]:
    """The bases `principal` may read, oldest first (bases are few: every one is read, and
    filtered here, not in SQL)."""
    with unit_of_work(reg.sessions) as session:
        return readable_bases(session, principal)


def readable_bases(session: Session, reader: Principal) -> list[BaseInfo]:
    """Every base `reader` may read (base_readable), oldest first, with the names it may read
    (base_info): four queries whatever their number (the bases, their names, the public
    namespaces among the names', the module counts), where one base at a time cost five each."""
    rows = session.scalars(select(m.BaseModel).order_by(m.BaseModel.id)).all()
    names: dict[int, list[m.BaseName]] = {}
    for n in session.scalars(select(m.BaseName).order_by(m.BaseName.name)):
        names.setdefault(n.base_model_id, []).append(n)
    counts: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(m.BaseModule.base_model_id, func.count()).group_by(m.BaseModule.base_model_id)
        ).all()
    )
    readable = set(readable_base_names(session, reader, [n.name for ns in names.values() for n in ns]))
    out = []
    for row in rows:
        shown = [n for n in names.get(row.id, []) if n.name in readable]
        if shown or global_admin(reader, "read"):  # base_readable's rule
            out.append(_info(row, shown, counts.get(row.id, 0), False))
    return out


def get_base_layout(reg: Registry, text: str, *, principal: Principal) -> BaseLayout:
    """A base with its config.json and module table (the planner's input); NotFound as get_base."""
    with unit_of_work(reg.sessions) as session:
        row = resolve_base(session, text, principal)
        rows = session.scalars(
            select(m.BaseModule).where(m.BaseModule.base_model_id == row.id).order_by(m.BaseModule.name)
        ).all()
        return BaseLayout(
            base=base_info(session, row, module_count=len(rows), reader=principal),
            config=row.config,
            modules=[ModuleInfo.model_validate(x, from_attributes=True) for x in rows],
        )
