"""Version summaries as entities: registry.reads' one row-to-document mapper, validated. What a
listing shows of a version and the first fields of a whole one (versions.version_info)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry import reads
from registry.entities import VersionSummary
from registry.reads.entity import as_entity
from registry.reads.session import SessionDriver


def summary_entity(doc: dict[str, Any]) -> VersionSummary:
    """registry.reads' summary document as the entity (evals as stored: registry.reads.entity)."""
    return as_entity(VersionSummary, doc)


def version_summary(session: Session, version_id: int) -> VersionSummary:
    """The summary of one version, read in `session` (its own writes included)."""
    [doc] = reads.summaries(SessionDriver(session), [version_id])
    return summary_entity(doc)
