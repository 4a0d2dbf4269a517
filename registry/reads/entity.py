"""registry.reads' documents as the entities (imports pydantic and the entities: not imported by
registry.reads itself). Evals are taken as stored: a row older than EvalScoreIn's name rules must
still be shown."""

from __future__ import annotations

from typing import Any, TypeVar

from registry.entities import EvalScoreIn, VersionSummary

S = TypeVar("S", bound=VersionSummary)


def as_entity(cls: type[S], doc: dict[str, Any]) -> S:
    """A summary's (VersionSummary) or a whole version's (VersionInfo) document as the entity."""
    evals = [EvalScoreIn.model_construct(**e) for e in doc["evals"]]
    return cls.model_validate({**doc, "evals": []}).model_copy(update={"evals": evals})
