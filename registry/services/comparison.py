"""Versions side by side (issue 13): the config fields that differ, parameter counts and every
current score. Exposed as `rankings.compare` beside the leaderboard and the Pareto front."""

from __future__ import annotations

from typing import Any

from registry.access.checks import require_reader_of
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import read_only
from registry.entities import ComparedVersion, Comparison
from registry.errors import BadRequest
from registry.refs import Ref
from registry.services.context import Registry
from registry.services.evaluations import current_scores
from registry.services.lookup import resolve_row

MIN_COMPARE = 2
"""Comparing one version with itself says nothing: `compare REF REF...`."""
MAX_COMPARE = 20
COMPARED_COLUMNS = (
    "peft_type",
    "task_type",
    "r",
    "lora_alpha",
    "target_modules",
    "lora_dropout",
    "use_rslora",
    "use_dora",
    "base_model_name",
    "base_model_revision",
    "task",
)


def compare(reg: Registry, refs: list[Ref], *, principal: Principal) -> Comparison:
    """The versions side by side: config fields (the ones that differ listed), parameter counts,
    and every current score."""
    if not MIN_COMPARE <= len(refs) <= MAX_COMPARE:
        raise BadRequest(f"compare between {MIN_COMPARE} and {MAX_COMPARE} versions (got {len(refs)})")
    with read_only(reg.sessions) as session:
        rows = []
        for ref in refs:
            require_reader_of(session, principal, ref.repo, str(ref))
            row = resolve_row(session, ref)
            rows.append((f"{ref.repo}:{row.number}", row))
        scores = current_scores(session, [v.id for _, v in rows])
    configs = [_compared_config(v) for _, v in rows]
    fields = sorted({k for c in configs for k in c})
    differing = [f for f in fields if len({_hashable(c.get(f)) for c in configs}) > 1]
    keys = sorted({_metric_key(k) for sc in scores.values() for k in sc})
    versions = []
    for (ref_text, v), config in zip(rows, configs, strict=True):
        by_key = {_metric_key(k): val for k, val in scores[v.id].items()}
        versions.append(
            ComparedVersion(
                ref=ref_text,
                digest=v.digest,
                config=config,
                trainable_params=v.trainable_params,
                adapter_bytes=v.adapter_bytes,
                scores={k: by_key.get(k) for k in keys},
            )
        )
    return Comparison(versions=versions, differing=differing, metrics=keys)


def _compared_config(v: m.Version) -> dict[str, Any]:
    """The indexed columns, then every other key of the PEFT config as recorded."""
    out: dict[str, Any] = {c: getattr(v, c) for c in COMPARED_COLUMNS}
    for k, val in (v.config or {}).items():
        if k not in out and k not in ("base_model_name_or_path", "revision"):
            out[k] = val
    return out


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(sorted(map(str, value)))
    if isinstance(value, dict):
        return tuple(sorted((k, str(v)) for k, v in value.items()))
    return value


def _metric_key(key: tuple[str, str | None, str | None]) -> str:
    metric, dataset, split = key
    if dataset is None:
        return metric
    return f"{metric}@{dataset}" + (f":{split}" if split else "")
