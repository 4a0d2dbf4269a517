"""The parent -> child edges a lineage document records, kept in `lineage_edges` beside it so that
descendants are an index lookup rather than a scan of every version's JSON. Written in the same
transaction as the child (a merged version, an exported base) and, for rows older than the table,
by migration 0007 (which keeps its own frozen copy of `recorded_edges`).

A pushed lineage is the pusher's claim: `checked_lineage` indexes an edge only when its parent
exists and the pusher may read it (a merge or export job publishes with its submitter's rights,
who had to read the inputs); any other claim stays in the document, marked unverified, and never
puts the pusher in someone else's "derived into"."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from registry.access.checks import base_readable, namespace_res, readable
from registry.access.policy import may
from registry.access.principal import Principal
from registry.db import models as m
from registry.jobspec.lineage import ExportLineage, read_lineage, with_unverified
from registry.refs import ref_or_none

KEY_LEN = 71
"""lineage_edges.parent_key: a digest or a fingerprint (sha256:<64 hex>)."""
REF_LEN = 256
"""lineage_edges.parent_ref."""


def recorded_edges(lineage: dict[str, Any] | None) -> list[dict[str, Any]]:
    """(parent_key, parent_ref, kind, weight) of each parent `lineage` names: a merge's parents by
    digest; an export's adapter by digest and base by fingerprint. What the typed lineage cannot
    read (registry/jobspec/lineage.py), or a key or reference longer than the index holds, is
    simply not an edge."""
    lin = read_lineage(lineage)
    out: list[dict[str, Any]] = []
    if lin is None:
        return out
    out += [  # the parents any document lists, whatever its kind (a pushed claim may say "export")
        dict(parent_key=p.digest, parent_ref=_short(p.ref), kind="merge", weight=p.weight)
        for p in lin.parents
        if len(p.digest) <= KEY_LEN
    ]
    if isinstance(lin, ExportLineage):
        for key, ref in ((lin.adapter_digest, lin.adapter), (lin.base_fingerprint, lin.base)):
            if key is not None and len(key) <= KEY_LEN:
                out.append(dict(parent_key=key, parent_ref=_short(ref), kind="export", weight=None))
    return out


def _short(ref: str | None) -> str | None:
    return ref if ref is not None and len(ref) <= REF_LEN else None


def checked_lineage(
    session: Session, lineage: dict[str, Any] | None, pusher: Principal
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the document to store, the edges to index) for a pushed lineage: an edge whose parent does
    not exist or `pusher` may not read is left out of the index, and the document says so
    (jobspec.lineage.with_unverified: the parent entry gets `"unverified": true` and its key is
    listed in the top-level `unverified`)."""
    if lineage is None:
        return None, []
    edges = recorded_edges(lineage)
    lin = read_lineage(lineage)
    fingerprint = lin.base_fingerprint if isinstance(lin, ExportLineage) else None
    good = [e for e in edges if _claim_holds(session, fingerprint, e, pusher)]
    doubtful = sorted({e["parent_key"] for e in edges} - {e["parent_key"] for e in good})
    return with_unverified(lineage, doubtful), good


def _claim_holds(
    session: Session, base_fingerprint: str | None, edge: dict[str, Any], pusher: Principal
) -> bool:
    """Whether the parent an edge names exists and `pusher` may read it (an export's base: by
    `base_fingerprint`)."""
    key = edge["parent_key"]
    if edge["kind"] == "export" and key == base_fingerprint:
        # Several bases may share the fingerprint (one per namespace that registered the weights).
        same = session.scalars(select(m.BaseModel.id).where(m.BaseModel.fingerprint == key))
        return any(base_readable(session, pusher, base_id) for base_id in same)
    v, r = m.Version, m.Repository
    q = select(v.id).join(r, r.id == v.repository_id).where(v.digest == key)
    ref = ref_or_none(edge["parent_ref"])
    if ref is None:  # any version with the digest, among those the pusher may read
        q = q.where(readable(pusher, r.namespace))
    else:
        if not (pusher.is_operator or may(pusher, "read", namespace_res(session, ref.repo.namespace))):
            return False
        q = q.where(r.namespace == ref.repo.namespace, r.name == ref.repo.name)
        if ref.version is not None:
            q = q.where(v.number == ref.version)
    return session.scalar(q.limit(1)) is not None


def record_edges(
    session: Session,
    lineage: dict[str, Any] | None,
    *,
    child_version_id: int | None = None,
    child_base_id: int | None = None,
    edges: list[dict[str, Any]] | None = None,
) -> None:
    """Add the edges of a child's lineage (once: a base registered again adds none); `edges`, when
    given, are the ones `checked_lineage` kept."""
    edges = recorded_edges(lineage) if edges is None else edges
    if not edges:
        return
    e = m.LineageEdge
    mine = (
        e.child_version_id == child_version_id
        if child_version_id is not None
        else e.child_base_id == child_base_id
    )
    if session.scalar(select(exists().where(mine))):
        return
    session.add_all(e(child_version_id=child_version_id, child_base_id=child_base_id, **d) for d in edges)
