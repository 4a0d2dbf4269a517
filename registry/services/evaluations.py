"""Evaluations as history (issue 13): scores recorded on a version at any time, append-only, each
with who and when; the latest per (metric, dataset, split) is the current one."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from registry.access.checks import require_reader_of, require_writer_of
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import EvalAdd, EvalHistory, EvalInput, EvalRecord, EvalScoreIn
from registry.errors import BadRequest, ValidationFailed
from registry.refs import Ref
from registry.services import audit
from registry.services.context import Registry
from registry.services.lookup import resolve_row
from registry.services.timeutil import now

EvalKey = tuple[str, str | None, str | None]

HISTORY_LIMIT = 100
"""Records a history answer lists by default (newest first; `total` counts them all)."""
MAX_HISTORY_LIMIT = 1000
"""The most one answer lists: the history is append-only and grows without bound."""


def add_scores(
    reg: Registry,
    ref: Ref,
    scores: list[EvalInput],
    note: str | None = None,
    *,
    principal: Principal,
) -> EvalHistory:
    """Record `scores` on the version `ref` names (write permission on its repository). Each score
    supersedes the current one of its (metric, dataset, split); nothing is ever overwritten.

    Raises:
        ValidationFailed: no scores, or a key given twice (EvalAdd's rule, entities.EvalScores,
            which push-time scores share).
        NotFound: the version does not exist or `principal` may not read it.
        Forbidden: `principal` may read but not write it.
    """
    try:
        body = EvalAdd(scores=scores, note=note)
    except ValidationError as err:
        first = err.errors()[0]
        msg = str(first["ctx"]["error"]) if "error" in first.get("ctx", {}) else first["msg"]
        raise ValidationFailed(f"scores: {msg}", field="scores") from err
    scores, note = body.scores, body.note
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, ref.repo)
        version = resolve_row(session, ref)
        # Lock the version row: two concurrent adds of the same key must not both stay current.
        session.execute(select(m.Version.id).where(m.Version.id == version.id).with_for_update())
        record_scores(session, version.id, scores, principal.name, note)
        audit.record(
            session,
            principal,
            "eval",
            f"{ref.repo}:{version.number}",
            {"scores": [s.model_dump() for s in scores], "note": note},
            repo=str(ref.repo),
        )
        session.flush()
        return _history(session, version, f"{ref.repo}:{version.number}")


def record_scores(
    session: Session,
    version_id: int,
    scores: Iterable[EvalScoreIn],
    recorded_by: str,
    note: str | None,
    at: datetime | None = None,
) -> None:
    """Append `scores` to a version's history inside the caller's transaction (push-time --eval and
    `eval add` alike), marking the records they supersede as no longer current."""
    at = at or now()
    for s in scores:
        e = m.EvalScore
        session.execute(
            update(e)
            .where(
                e.version_id == version_id,
                e.metric == s.metric,
                e.dataset.is_(None) if s.dataset is None else e.dataset == s.dataset,
                e.split.is_(None) if s.split is None else e.split == s.split,
                e.current,
            )
            .values(current=False)
        )
        session.add(
            e(
                version_id=version_id,
                metric=s.metric,
                value=s.value,
                dataset=s.dataset,
                split=s.split,
                recorded_by=recorded_by,
                created_at=at,
                note=note,
                current=True,
            )
        )
    session.flush()


def history(reg: Registry, ref: Ref, limit: int = HISTORY_LIMIT, *, principal: Principal) -> EvalHistory:
    """The newest `limit` scores recorded on the version `ref` names (newest first), how many there
    are in all, and every current one.

    Raises:
        BadRequest: `limit` outside 1..MAX_HISTORY_LIMIT.
        NotFound: the version does not exist or `principal` may not read it.
    """
    if not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_HISTORY_LIMIT}")
    with unit_of_work(reg.sessions) as session:
        require_reader_of(session, principal, ref.repo, str(ref))
        version = resolve_row(session, ref)
        return _history(session, version, f"{ref.repo}:{version.number}", limit)


def _history(session: Session, version: m.Version, ref: str, limit: int = HISTORY_LIMIT) -> EvalHistory:
    e = m.EvalScore
    mine = e.version_id == version.id
    newest = session.scalars(select(e).where(mine).order_by(e.id.desc()).limit(limit)).all()
    total = session.scalar(select(func.count()).select_from(e).where(mine)) or 0
    # The current ones are one per key (few), whatever the history's length.
    current = sorted(
        (_record(r) for r in session.scalars(select(e).where(mine, e.current))),
        key=lambda r: (r.metric, r.dataset or "", r.split or ""),
    )
    return EvalHistory(
        ref=ref,
        digest=version.digest,
        records=[_record(r) for r in newest],
        total=total,
        current=current,
    )


def _record(r: m.EvalScore) -> EvalRecord:
    return EvalRecord.model_validate(r)


def current_scores(session: Session, version_ids: list[int]) -> dict[int, dict[EvalKey, float]]:
    """version id -> {(metric, dataset, split): current value}."""
    out: dict[int, dict[EvalKey, float]] = {v: {} for v in version_ids}
    if not version_ids:
        return out
    e = m.EvalScore
    for vid, metric, dataset, split, value in session.execute(
        select(e.version_id, e.metric, e.dataset, e.split, e.value).where(
            e.version_id.in_(version_ids), e.current
        )
    ):
        out[vid][(metric, dataset, split)] = value
    return out
