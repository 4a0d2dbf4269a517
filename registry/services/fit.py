"""The fit query: which adapters fit this base? Answered from indexed columns, not adapter files.

Tier exact: trained on these weights (linked to this base). Tier compatible: linked to another base
with the same structure signature, or unlinked with every recorded module present in this base with
matching in/out features.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, bindparam, case, exists, func, literal, not_, select, union_all
from sqlalchemy.orm import Session

from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import FitItem, FitQuery, FitRejection, FitResult
from registry.services.bases import base_info, base_view, resolve_base
from registry.services.context import Registry
from registry.services.fitcheck import base_shape_keys
from registry.services.qlora import QLORA_OK_VERDICTS

EXPLAIN_LIMIT = 50


def _parts(base: m.BaseModel, modules: Sequence[m.BaseModule], tier: str) -> list[Select[int, str]]:
    """The versions that fit, as index-driven parts (no scan of all versions), each selecting
    (id, tier) from `versions` so that filters apply inside each part."""
    exact = select(m.Version.id, literal("exact").label("tier")).where(m.Version.base_model_id == base.id)
    same_structure = select(m.BaseModel.id).where(
        m.BaseModel.structure_signature == base.structure_signature, m.BaseModel.id != base.id
    )
    linked = select(m.Version.id, literal("compatible").label("tier")).where(
        m.Version.base_model_id.in_(same_structure)
    )
    # Unlinked versions whose every recorded module this base has, with the same shapes: look the
    # base's module keys up in the partial index of unlinked version modules, count per version.
    keys = [k for mod in modules for k in base_shape_keys(mod.name, mod.in_features, mod.out_features)]
    vm = m.VersionModule
    matched = (
        select(vm.version_id)
        # Bare `unlinked`: the partial index's predicate. One expanding parameter for the keys keeps
        # the statement's cache key small (a literal list of hundreds of keys cost ~1 ms per query).
        .where(vm.unlinked, vm.shape_key.in_(bindparam("shape_keys", keys, expanding=True)))
        .group_by(vm.version_id)
        .having(func.count() == func.max(vm.module_count))
        .subquery()
    )
    unlinked = select(m.Version.id, literal("compatible").label("tier")).join(
        matched, matched.c.version_id == m.Version.id
    )
    chosen: dict[str, list[Select[int, str]]] = {
        "exact": [exact],
        "compatible": [linked, unlinked],
        "all": [exact, linked, unlinked],
    }
    return chosen[tier]


def _not_forced(part: Select[int, str]) -> Select[int, str]:
    """A version forced past the fit check on push does not fit, whatever it is linked to."""
    return part.where(m.Version.fit_override.is_(None))


def _filtered(part: Select[int, str], q: FitQuery) -> Select[int, str]:
    """The query's filters, applied inside each part so they cut rows before ranking."""
    part = _not_forced(part)
    if q.task:
        part = part.where(m.Version.task == q.task)
    if q.peft_type:
        part = part.where(m.Version.peft_type == q.peft_type.upper())
    if q.qlora_ok:
        part = part.where(
            exists().where(
                m.QloraCheck.version_id == m.Version.id, m.QloraCheck.verdict.in_(QLORA_OK_VERDICTS)
            )
        )
    for metric, minimum in q.min_scores.items():
        part = part.where(
            exists().where(
                m.EvalScore.version_id == m.Version.id,
                m.EvalScore.metric == metric,
                m.EvalScore.value >= minimum,
            )
        )
    return part


def fit(reg: Registry, q: FitQuery) -> FitResult:
    with unit_of_work(reg.sessions) as session:
        base = resolve_base(session, q.base)
        modules = session.scalars(select(m.BaseModule).where(m.BaseModule.base_model_id == base.id)).all()
        candidates = _parts(base, modules, q.tier)
        parts = [_filtered(p, q) for p in candidates]
        fitting = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
        score = (
            select(func.max(m.EvalScore.value))
            .where(m.EvalScore.version_id == fitting.c.id, m.EvalScore.metric == q.sort)
            .scalar_subquery()
            if q.sort
            else literal(None)
        )
        # Rank and cut on (id, tier, score) alone; read versions, repositories and names for the page.
        tier_rank = case((fitting.c.tier == "exact", 0), else_=1)
        order = [score.desc().nulls_last()] if q.sort else []
        ranked = (
            select(fitting.c.id, fitting.c.tier, score.label("score"))
            .order_by(*order, tier_rank, fitting.c.id.desc())
            .limit(q.limit)
            .subquery()
        )
        base_name = (
            select(m.BaseName.name)
            .where(m.BaseName.base_model_id == m.Version.base_model_id)
            .order_by(m.BaseName.name)
            .limit(1)
            .scalar_subquery()
        )
        stmt = (
            select(
                m.Version.number,
                m.Version.digest,
                m.Version.peft_type,
                m.Version.task,
                m.Version.r,
                m.Repository.namespace,
                m.Repository.name,
                ranked.c.tier,
                ranked.c.score,
                func.coalesce(base_name, m.Version.base_model_name).label("base_label"),
            )
            .join(ranked, ranked.c.id == m.Version.id)
            .join(m.Repository, m.Repository.id == m.Version.repository_id)
            .order_by(
                *([ranked.c.score.desc().nulls_last()] if q.sort else []),
                case((ranked.c.tier == "exact", 0), else_=1),
                m.Version.id.desc(),
            )
        )
        items = [
            FitItem(
                ref=f"{r.namespace}/{r.name}:{r.number}",
                repo=f"{r.namespace}/{r.name}",
                version=r.number,
                digest=r.digest,
                tier=r.tier,
                peft_type=r.peft_type,
                task=r.task,
                r=r.r,
                base_model=r.base_label,
                score=r.score,
            )
            for r in session.execute(stmt)
        ]
        rejected = None
        if q.explain:  # what does not fit this base at all, filters aside
            fits = m.Version.id.in_(
                union_all(*[_not_forced(p).with_only_columns(m.Version.id) for p in candidates])
            )
            rejected = _explain(session, base, fits)
        info = base_info(session, base, module_count=len(modules))
        return FitResult(base=info, items=items, rejected=rejected)


def _explain(session: Session, base: m.BaseModel, fits) -> list[FitRejection]:  # type: ignore[no-untyped-def]
    """Why the newest versions outside the answer do not fit (module by module)."""
    view = base_view(session, base)
    rows = session.execute(
        select(
            m.Version.id,
            m.Version.number,
            m.Version.base_model_name,
            m.Repository.namespace,
            m.Repository.name,
        )
        .join(m.Repository, m.Repository.id == m.Version.repository_id)
        .where(not_(fits))
        .order_by(m.Version.id.desc())
        .limit(EXPLAIN_LIMIT)
    ).all()
    out = []
    for r in rows:
        reasons = []
        for vm in session.scalars(select(m.VersionModule).where(m.VersionModule.version_id == r.id)):
            target = view.modules.get(vm.name)
            if target is None:
                reasons.append(f"module {vm.name} is not in the base")
            elif (vm.in_features not in (None, target.in_features)) or (
                vm.out_features not in (None, target.out_features)
            ):
                reasons.append(
                    f"module {vm.name} expects {vm.in_features} -> {vm.out_features}, "
                    f"base has {target.in_features} -> {target.out_features}"
                )
        if not reasons:
            reasons.append(
                f"trained on another structure ({r.base_model_name or 'unknown base'}) and no module "
                "table to compare"
            )
        out.append(FitRejection(ref=f"{r.namespace}/{r.name}:{r.number}", reasons=reasons))
    return out
