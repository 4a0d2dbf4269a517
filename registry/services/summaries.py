"""Version summaries as entities: registry.reads' one row-to-document mapper, validated. What a
listing shows of a version and the first fields of a whole one (versions.version_info)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry import reads
from registry.entities import EvalScoreIn, VersionSummary
from registry.reads.session import SessionDriver


def summary_entity(doc: dict[str, Any]) -> VersionSummary:
    """registry.reads' summary document as the entity. Its evals are taken as stored: a row older
    than EvalScoreIn's name rules must still be shown."""
    evals = [EvalScoreIn.model_construct(**e) for e in doc["evals"]]
    return VersionSummary.model_validate({**doc, "evals": []}).model_copy(update={"evals": evals})


def version_summary(session: Session, version_id: int) -> VersionSummary:
    """The summary of one version, read in `session` (its own writes included)."""
    [doc] = reads.summaries(SessionDriver(session), [version_id])
    return summary_entity(doc)
