"""Lineage as a graph (issue 13): around a version or a base, its ancestors (the parents of a merge
with weights, method and error; the adapter and base of an export; the base it was trained on) and
its descendants (everything derived from it, found through the indexed `lineage_edges`).

What the caller may not read is shown as an opaque `hidden` node (never its name or digest) and
not followed; a recorded parent that no longer exists is a `deleted` node with its recorded digest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from registry.access.checks import base_readable, namespace_res, readable
from registry.access.policy import may
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import read_only
from registry.entities import LineageEdge, LineageGraph, LineageNode
from registry.errors import NotFound
from registry.jobspec.lineage import ExportLineage, MergeLineage, read_lineage
from registry.refs import ref_or_none
from registry.services.bases import find_base, readable_base_names
from registry.services.context import Registry
from registry.services.lookup import resolve_row

MAX_DEPTH = 32
MAX_NODES = 500
MAX_CHILDREN = 100
"""Versions trained on a base listed per base (a popular base has thousands)."""


@dataclass
class _Graph:
    session: Session
    reader: Principal
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[LineageEdge] = field(default_factory=list)
    seen_edges: set[tuple[str, str, str]] = field(default_factory=set)
    truncated: bool = False
    hidden: int = 0
    _ns: dict[str, bool] = field(default_factory=dict)

    def may_read_ns(self, namespace: str) -> bool:
        if self.reader.is_operator:
            return True
        if namespace not in self._ns:
            self._ns[namespace] = may(self.reader, "read", namespace_res(self.session, namespace))
        return self._ns[namespace]

    def full(self) -> bool:
        if len(self.nodes) >= MAX_NODES:
            self.truncated = True
            return True
        return False

    def version(self, v: m.Version) -> str | None:
        """The node of a version, or of a hidden one (None: not to be followed)."""
        repo = self.session.get(m.Repository, v.repository_id)
        assert repo is not None
        if not self.may_read_ns(repo.namespace):
            self.opaque()
            return None
        ref = f"{repo.namespace}/{repo.name}:{v.number}"
        node_id = f"version:{ref}"
        self.nodes.setdefault(
            node_id, LineageNode(id=node_id, kind="version", label=ref, digest=v.digest, ref=ref)
        )
        return node_id

    def base(self, b: m.BaseModel) -> str | None:
        if not (self.reader.is_operator or base_readable(self.session, self.reader, b.id)):
            self.opaque()
            return None
        names = self.session.scalars(
            select(m.BaseName.name).where(m.BaseName.base_model_id == b.id).order_by(m.BaseName.name)
        ).all()
        shown = readable_base_names(self.session, self.reader, names)
        node_id = f"base:{b.fingerprint or b.id}"
        label = shown[0] if shown else (b.fingerprint or f"base #{b.id}")[:19]
        self.nodes.setdefault(
            node_id, LineageNode(id=node_id, kind="base", label=label, digest=b.fingerprint, ref=label)
        )
        return node_id

    def opaque(self) -> None:
        self.hidden += 1
        node_id = f"hidden:{self.hidden}"
        self.nodes[node_id] = LineageNode(id=node_id, kind="hidden", label="(not readable)")
        return None

    def deleted(self, digest: str, label: str | None) -> str:
        node_id = f"deleted:{digest}"
        self.nodes.setdefault(
            node_id,
            LineageNode(id=node_id, kind="deleted", label=f"{label or digest[:19]} (deleted)", digest=digest),
        )
        return node_id

    def edge(self, source: str, target: str, kind: str, **extra: Any) -> None:
        key = (source, target, kind)
        if key not in self.seen_edges:
            self.seen_edges.add(key)
            self.edges.append(LineageEdge(source=source, target=target, kind=kind, **extra))


def graph(reg: Registry, target: str, *, principal: Principal, depth: int = 8) -> LineageGraph:
    """The lineage around `target`: a version reference, or a base name or fingerprint.

    Raises:
        NotFound: no such version or base, or `principal` may not read it.
    """
    depth = max(1, min(depth, MAX_DEPTH))
    with read_only(reg.sessions) as session:
        g = _Graph(session, principal)
        root = _root(g, target)
        _walk(g, root, depth, up=True)
        _walk(g, root, depth, up=False)
        return LineageGraph(root=root[0], nodes=list(g.nodes.values()), edges=g.edges, truncated=g.truncated)


Item = tuple[str, m.Version | m.BaseModel]


def _root(g: _Graph, target: str) -> Item:
    ref = ref_or_none(target)
    if ref is not None and g.may_read_ns(ref.repo.namespace):
        # A repository the caller may not read is looked for no further than one that does not
        # exist: both end in the one NotFound below (or name a base the caller may read).
        repo = g.session.scalars(
            select(m.Repository.id).where(
                m.Repository.namespace == ref.repo.namespace, m.Repository.name == ref.repo.name
            )
        ).first()
        if repo is not None:
            v = resolve_row(g.session, ref)
            node = g.version(v)
            assert node is not None
            return node, v
    base = find_base(g.session, target, g.reader)
    if base is None:
        raise NotFound(f"{target!r} is neither a version nor a registered base you may read", ref=target)
    node = g.base(base)
    assert node is not None
    return node, base


def _walk(g: _Graph, root: Item, depth: int, *, up: bool) -> None:
    queue: deque[tuple[Item, int]] = deque([(root, 0)])
    expanded: set[str] = set()
    while queue:
        (node_id, row), d = queue.popleft()
        if node_id in expanded:
            continue
        expanded.add(node_id)
        if g.full():
            continue
        if d >= depth:
            g.truncated = g.truncated or _has_more(g, row, up)
            continue
        for nxt in _neighbours(g, node_id, row, up):
            queue.append((nxt, d + 1))


def _has_more(g: _Graph, row: m.Version | m.BaseModel, up: bool) -> bool:
    """Whether the walk stopped at `row` with more beyond it (without adding any of it)."""
    if up:
        lin = read_lineage(row.lineage)
        return isinstance(lin, ExportLineage) or (lin is not None and bool(lin.parents))
    key = row.digest if isinstance(row, m.Version) else row.fingerprint
    e = m.LineageEdge
    return key is not None and g.session.scalar(select(e.id).where(e.parent_key == key).limit(1)) is not None


def _neighbours(g: _Graph, node_id: str, row: m.Version | m.BaseModel, up: bool) -> list[Item]:
    if up:
        return _parents(g, node_id, row)
    return _children(g, node_id, row)


def _parents(g: _Graph, node_id: str, row: m.Version | m.BaseModel) -> list[Item]:
    out: list[Item] = []
    lin = read_lineage(row.lineage)
    if isinstance(row, m.Version):
        if row.base_model_id is not None:
            base = g.session.get(m.BaseModel, row.base_model_id)
            if base is not None:
                # The base a version was trained on is shown, not followed: its other descendants
                # are not this version's lineage.
                b = g.base(base)
                g.edge(b or f"hidden:{g.hidden}", node_id, "trained_on")
        if lin is not None:
            merge = lin if isinstance(lin, MergeLineage) else None
            for p in lin.parents:
                found = _version_parent(g, p.digest, p.ref)
                if found is None:
                    continue
                src, parent_row = found
                g.edge(
                    src,
                    node_id,
                    "merge",
                    weight=p.weight,
                    method=merge.method if merge else None,
                    error=merge.max_error if merge else None,
                    unverified=p.unverified,
                )
                if parent_row is not None:
                    out.append((src, parent_row))
    elif isinstance(lin, ExportLineage):
        if lin.adapter_digest is not None:
            found = _version_parent(g, lin.adapter_digest, lin.adapter)
            if found is not None:
                g.edge(found[0], node_id, "export")
                if found[1] is not None:
                    out.append((found[0], found[1]))
        fp = lin.base_fingerprint
        if fp is not None:
            # A base of these weights the reader may read, else one it is shown as hidden.
            base = find_base(g.session, fp, g.reader) or find_base(g.session, fp, None)
            if base is None:
                g.edge(g.deleted(fp, lin.base), node_id, "export")
            else:
                b = g.base(base)
                g.edge(b or f"hidden:{g.hidden}", node_id, "export")
                if b is not None:
                    out.append((b, base))
    return out


def _version_parent(g: _Graph, digest: str, ref_text: str | None) -> tuple[str, m.Version | None] | None:
    """The node of a recorded parent version: itself, hidden, or deleted (with no row to follow)."""
    ref = None
    if ref_text is not None:
        ref = ref_or_none(ref_text)
    if ref is not None:
        if not g.may_read_ns(ref.repo.namespace):
            g.opaque()
            return f"hidden:{g.hidden}", None
        q = (
            select(m.Version)
            .join(m.Repository, m.Repository.id == m.Version.repository_id)
            .where(
                m.Repository.namespace == ref.repo.namespace,
                m.Repository.name == ref.repo.name,
                m.Version.digest == digest,
            )
        )
        if ref.version is not None:
            q = q.where(m.Version.number == ref.version)
        v = g.session.scalars(q.limit(1)).first()
        if v is None:
            return g.deleted(digest, ref_text), None
    else:
        v = g.session.scalars(
            select(m.Version).where(m.Version.digest == digest).order_by(m.Version.id).limit(1)
        ).first()
        if v is None:
            return g.deleted(digest, None), None
    node = g.version(v)
    if node is None:
        return f"hidden:{g.hidden}", None
    return node, v


def _children(g: _Graph, node_id: str, row: m.Version | m.BaseModel) -> list[Item]:
    out: list[Item] = []
    e = m.LineageEdge
    if isinstance(row, m.Version):
        key = row.digest
        own_ref = node_id.removeprefix("version:")
        cond = or_(e.parent_ref.is_(None), e.parent_ref == own_ref)
    else:
        if row.fingerprint is None:
            return _trained_on(g, node_id, row)
        key = row.fingerprint
        cond = e.kind == "export"
    edges = g.session.execute(
        select(e.child_version_id, e.child_base_id, e.kind, e.weight)
        .where(e.parent_key == key, cond)
        .order_by(e.id)
        .limit(MAX_CHILDREN + 1)
    ).all()
    if len(edges) > MAX_CHILDREN:
        g.truncated = True
    for child_version_id, child_base_id, kind, weight in edges[:MAX_CHILDREN]:
        child: m.Version | m.BaseModel | None
        if child_version_id is not None:
            child = g.session.get(m.Version, child_version_id)
            target = g.version(child) if child is not None else None
        else:
            child = g.session.get(m.BaseModel, child_base_id)
            target = g.base(child) if child is not None else None
        if child is None:
            continue
        extra: dict[str, Any] = {"weight": weight}
        lin = read_lineage(child.lineage) if kind == "merge" and isinstance(child, m.Version) else None
        if isinstance(lin, MergeLineage):
            extra |= {"method": lin.method, "error": lin.max_error}
        g.edge(node_id, target or f"hidden:{g.hidden}", kind, **extra)
        if target is not None:
            out.append((target, child))
    if isinstance(row, m.BaseModel):
        out += _trained_on(g, node_id, row)
    return out


def _trained_on(g: _Graph, node_id: str, base: m.BaseModel) -> list[Item]:
    """The versions trained on a base (readable ones, newest first, capped): leaves of its graph."""
    rows = g.session.scalars(
        select(m.Version)
        .join(m.Repository, m.Repository.id == m.Version.repository_id)
        .where(m.Version.base_model_id == base.id, readable(g.reader, m.Repository.namespace))
        .order_by(m.Version.id.desc())
        .limit(MAX_CHILDREN + 1)
    ).all()
    if len(rows) > MAX_CHILDREN:
        g.truncated = True
    for v in rows[:MAX_CHILDREN]:
        target = g.version(v)
        if target is not None:
            g.edge(node_id, target, "trained_on")
    return []
