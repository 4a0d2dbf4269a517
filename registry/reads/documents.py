"""The one row-to-document mapper of a version summary: VersionSummary's fields in its order,
as its JSON dump writes them, from a row of either driver (registry.reads.driver says how their
values differ)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

SUMMARY_COLUMNS = """
v.id, r.namespace, r.name, v.number, v.digest, v.created_at, v.pushed_by, v.task,
v.peft_type, v.task_type, v.r, v.lora_alpha, CAST(v.target_modules AS TEXT), v.lora_dropout,
v.use_rslora, v.use_dora, v.trainable_params, v.adapter_bytes, v.total_bytes,
v.base_model_name, v.base_model_revision, b.fingerprint, b.id,
v.lineage IS NOT NULL AND CAST(v.lineage AS TEXT) != 'null'
"""
# (SQLAlchemy's JSON type stores None as the JSON text 'null' unless told otherwise: `lineage` is
# None either way for the ORM, so both spellings mean "not derived". PostgreSQL's json has no `=`:
# compared as text.)


def summary_doc(row: tuple[Any, ...], evals: list[dict[str, Any]], aliases: list[str]) -> dict[str, Any]:
    """A row of SUMMARY_COLUMNS, its current evals (metric, value, dataset, split) and its alias
    names, as VersionSummary's JSON document."""
    (_, ns, name, number, digest, created_at, pushed_by, task, peft_type, task_type, r, alpha, targets,
     dropout, rslora, dora, params, adapter_bytes, total_bytes, base_name, base_rev, fingerprint,
     base_id, derived) = row  # fmt: skip
    repo = f"{ns}/{name}"
    return {
        "repo": repo,
        "version": number,
        "digest": digest,
        "ref": f"{repo}:{number}",
        "created_at": iso_utc(created_at),
        "pushed_by": pushed_by,
        "task": task,
        "peft_type": peft_type,
        "task_type": task_type,
        "r": r,
        "lora_alpha": _float(alpha),
        "target_modules": None if targets is None else json.loads(targets),
        "lora_dropout": _float(dropout),
        "use_rslora": bool(rslora),
        "use_dora": bool(dora),
        "trainable_params": params,
        "adapter_bytes": adapter_bytes,
        "total_bytes": total_bytes,
        "base_model": {"name": base_name, "revision": base_rev},
        "evals": [{**e, "value": float(e["value"])} for e in evals],
        "aliases": aliases,
        "base_fingerprint": fingerprint,
        "base_linked": base_id is not None,
        "derived": bool(derived),
    }


def iso_utc(stored: str | datetime) -> str:
    """A UTCDateTime column (registry.db.types) as pydantic writes the aware UTC datetime the ORM
    reads back: `2026-11-29T06:04:08.288081Z`. SQLite gives the stored text (UTC, no zone as the
    ORM writes it; one with a zone is converted), PostgreSQL an aware datetime."""
    moment = datetime.fromisoformat(stored) if isinstance(stored, str) else stored
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
