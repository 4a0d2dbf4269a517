"""Recording and reading `check-4bit` answers on versions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from registry.access.checks import require_writer_of
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import QLORA_VARIANT_PATTERN
from registry.errors import BadRequest
from registry.refs import Ref
from registry.services.context import Registry
from registry.services.lookup import resolve_row
from registry.services.timeutil import now

QLORA_OK_VERDICTS = ("pass", "warn")
"""What `fit --qlora-ok` keeps: the adapter works on a 4-bit base (warn: with caveats to read)."""
DEFAULT_VARIANT: dict[str, Any] = {"quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}
"""The variant of a report that names none (checks recorded before variants existed)."""


def parse_variant(name: str) -> tuple[str, bool, str | None]:
    """(quant type, double quantization, compute dtype or None for any) of a variant name as
    `fit --qlora-variant` takes it (entities.QLORA_VARIANT_PATTERN: `nf4`, `fp4-nodq-bfloat16`)."""
    match = re.fullmatch(QLORA_VARIANT_PATTERN, name)
    if match is None:
        raise BadRequest(
            f"4-bit variant {name!r}: expected <nf4|fp4>[-nodq][-<float32|bfloat16|float16>]",
            field="qlora_variant",
        )
    return match.group(1), match.group(2) is None, match.group(4)


def record_verdict(
    reg: Registry,
    ref: Ref,
    base_model_id: int,
    report: dict[str, Any],
    job_id: int | None,
    on_commit: Callable[[Session, None], None] | None = None,
    *,
    principal: Principal,
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
    """Store the answer for (version, base, variant); a later check of the same triple replaces it."""
    variant = report.get("variant") or DEFAULT_VARIANT
    key = (
        version_id,
        base_model_id,
        str(variant["quant_type"]),
        bool(variant["double_quant"]),
        str(variant["compute_dtype"]),
    )
    row = session.get(m.QloraCheck, key)
    if row is None:
        row = m.QloraCheck(
            version_id=version_id,
            base_model_id=base_model_id,
            quant_type=key[2],
            double_quant=key[3],
            compute_dtype=key[4],
        )
        session.add(row)
    row.verdict = str(report["verdict"])
    row.report = report
    row.job_id = job_id
    row.created_at = now()
    session.flush()
