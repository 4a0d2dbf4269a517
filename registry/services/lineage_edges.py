"""The parent -> child edges a lineage document records, kept in `lineage_edges` beside it so that
descendants are an index lookup rather than a scan of every version's JSON. Written in the same
transaction as the child (a merged version, an exported base) and, for rows older than the table,
by migration 0007."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from registry.db import models as m


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


def record_edges(
    session: Session,
    lineage: dict[str, Any] | None,
    *,
    child_version_id: int | None = None,
    child_base_id: int | None = None,
) -> None:
    """Add the edges of a child's lineage (once: a base registered again adds none)."""
    edges = recorded_edges(lineage)
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
