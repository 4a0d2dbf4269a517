"""Recording and reading `check-4bit` answers on versions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.access.principal import OPERATOR, Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import QloraCheckSummary
from registry.refs import Ref
from registry.services.context import Registry
from registry.services.lookup import resolve_row
from registry.services.permissions import require_writer_of
from registry.services.timeutil import now

QLORA_OK_VERDICTS = ("pass", "warn")
"""What `fit --qlora-ok` keeps: the adapter works on an NF4 base (warn: with caveats to read)."""


def record_verdict(
    reg: Registry,
    ref: Ref,
    base_model_id: int,
    report: dict[str, Any],
    job_id: int | None,
    on_commit: Callable[[Session, None], None] | None = None,
    *,
    principal: Principal = OPERATOR,
) -> None:
    """Store the answer for (version at `ref`, base) in one unit of work; `on_commit` runs inside
    the same transaction (a worker's fenced job completion), as for a version or a derived base."""
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, ref.repo)  # a verdict is written on the version
        version = resolve_row(session, ref)
        record_check(session, version.id, base_model_id, report, job_id)
        if on_commit is not None:
            on_commit(session, None)


def record_check(
    session: Session, version_id: int, base_model_id: int, report: dict[str, Any], job_id: int | None
) -> None:
    """Store the answer for (version, base); a later check of the same pair replaces it."""
    row = session.get(m.QloraCheck, (version_id, base_model_id))
    if row is None:
        row = m.QloraCheck(version_id=version_id, base_model_id=base_model_id)
        session.add(row)
    row.verdict = str(report["verdict"])
    row.report = report
    row.job_id = job_id
    row.created_at = now()
    session.flush()


def qlora_summaries(session: Session, version_id: int) -> list[QloraCheckSummary]:
    rows = session.execute(
        select(m.QloraCheck, m.BaseModel.fingerprint)
        .join(m.BaseModel, m.BaseModel.id == m.QloraCheck.base_model_id)
        .where(m.QloraCheck.version_id == version_id)
        .order_by(m.QloraCheck.created_at.desc())
    ).all()
    out = []
    for check, fingerprint in rows:
        name = session.scalars(
            select(m.BaseName.name)
            .where(m.BaseName.base_model_id == check.base_model_id)
            .order_by(m.BaseName.name)
        ).first()
        out.append(
            QloraCheckSummary(
                base=name or (fingerprint or f"#{check.base_model_id}")[:19],
                base_fingerprint=fingerprint,
                verdict=check.verdict,
                checked_at=check.created_at,
                job=check.job_id,
                reasons=list(check.report.get("reasons", [])),
            )
        )
    return out
