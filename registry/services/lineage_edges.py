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
from registry.errors import RegistryError
from registry.refs import parse_ref


def recorded_edges(lineage: dict[str, Any] | None) -> list[dict[str, Any]]:
    """(parent_key, parent_ref, kind, weight) of each parent `lineage` names: a merge's parents by
    digest; an export's adapter by digest and base by fingerprint. Malformed entries are skipped
    (lineage is a free JSON document; what it cannot say is simply not an edge)."""
    if not isinstance(lineage, dict):
        return []
    out: list[dict[str, Any]] = []
    kind = lineage.get("kind")
    if isinstance(lineage.get("parents"), list):
        for p in lineage["parents"]:
            if isinstance(p, dict) and isinstance(p.get("digest"), str) and len(p["digest"]) <= 71:
                weight = p.get("weight")
                out.append(
                    dict(
                        parent_key=p["digest"],
                        parent_ref=_text(p.get("ref")),
                        kind="merge",
                        weight=float(weight) if isinstance(weight, int | float) else None,
                    )
                )
    if kind == "export":
        digest = lineage.get("adapter_digest")
        if isinstance(digest, str) and len(digest) <= 71:
            out.append(
                dict(parent_key=digest, parent_ref=_text(lineage.get("adapter")), kind="export", weight=None)
            )
        fingerprint = lineage.get("base_fingerprint")
        if isinstance(fingerprint, str) and len(fingerprint) <= 71:
            out.append(
                dict(
                    parent_key=fingerprint, parent_ref=_text(lineage.get("base")), kind="export", weight=None
                )
            )
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= 256 else None


def checked_lineage(
    session: Session, lineage: dict[str, Any] | None, pusher: Principal
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the document to store, the edges to index) for a pushed lineage: an edge whose parent does
    not exist or `pusher` may not read is left out of the index, and the document says so: the
    parent entry gets `"unverified": true` and its key is listed in the top-level `unverified`.
    Marks the pusher wrote are replaced (a claim cannot make itself look verified)."""
    edges = recorded_edges(lineage)
    if lineage is None:
        return None, []
    good = [e for e in edges if _claim_holds(session, lineage, e, pusher)]
    doubtful = sorted({e["parent_key"] for e in edges} - {e["parent_key"] for e in good})
    doc = {k: v for k, v in lineage.items() if k != "unverified"}
    if doubtful:
        doc["unverified"] = doubtful
    if isinstance(doc.get("parents"), list):
        doc["parents"] = [_marked(p, doubtful) for p in doc["parents"]]
    return doc, good


def _marked(parent: Any, doubtful: list[str]) -> Any:
    if not isinstance(parent, dict):
        return parent
    out = {k: v for k, v in parent.items() if k != "unverified"}
    if out.get("digest") in doubtful:
        out["unverified"] = True
    return out


def _claim_holds(session: Session, lineage: dict[str, Any], edge: dict[str, Any], pusher: Principal) -> bool:
    """Whether the parent an edge names exists and `pusher` may read it."""
    key = edge["parent_key"]
    if edge["kind"] == "export" and key == lineage.get("base_fingerprint"):
        # Several bases may share the fingerprint (one per namespace that registered the weights).
        same = session.scalars(select(m.BaseModel.id).where(m.BaseModel.fingerprint == key))
        return any(base_readable(session, pusher, base_id) for base_id in same)
    v, r = m.Version, m.Repository
    q = select(v.id).join(r, r.id == v.repository_id).where(v.digest == key)
    ref = None
    if edge["parent_ref"] is not None:
        try:
            ref = parse_ref(edge["parent_ref"])
        except RegistryError:
            ref = None
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
