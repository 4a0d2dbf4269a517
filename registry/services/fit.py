"""The fit query: which adapters fit this base? Answered from indexed columns, not adapter files.

Tier exact: trained on these weights (linked to this base). Tier compatible: linked to another base
with the same structure signature, or unlinked with every recorded module present in this base with
matching in/out features.
"""

from __future__ import annotations

from sqlalchemy import and_, case, exists, func, literal, not_, or_, select
from sqlalchemy.orm import Session

from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import FitItem, FitQuery, FitRejection, FitResult
from registry.services.bases import base_info, resolve_base
from registry.services.context import Registry

EXPLAIN_LIMIT = 50


def _module_mismatch(base_id: int):  # type: ignore[no-untyped-def]
    """EXISTS a recorded module of the version that this base lacks, or has with other shapes."""
    vm, bm = m.VersionModule, m.BaseModule
    matching = exists().where(
        bm.base_model_id == base_id,
        bm.name == vm.name,
        or_(vm.in_features.is_(None), bm.in_features == vm.in_features),
        or_(vm.out_features.is_(None), bm.out_features == vm.out_features),
    )
    return exists().where(vm.version_id == m.Version.id, not_(matching))


def fit(reg: Registry, q: FitQuery) -> FitResult:
    with unit_of_work(reg.sessions) as session:
        base = resolve_base(session, q.base)
        same_structure = select(m.BaseModel.id).where(
            m.BaseModel.structure_signature == base.structure_signature, m.BaseModel.id != base.id
        )
        # Unlinked versions have a NULL base: keep every condition two-valued so NOT() works in explain.
        linked = m.Version.base_model_id.is_not(None)
        exact = and_(linked, m.Version.base_model_id == base.id)
        unlinked_ok = and_(
            m.Version.base_model_id.is_(None),
            exists().where(m.VersionModule.version_id == m.Version.id),
            not_(_module_mismatch(base.id)),
        )
        compatible = or_(and_(linked, m.Version.base_model_id.in_(same_structure)), unlinked_ok)
        # A version forced past the fit check on push does not fit, whatever it is linked to.
        tier_cond = and_(
            m.Version.fit_override.is_(None),
            {"exact": exact, "compatible": compatible, "all": or_(exact, compatible)}[q.tier],
        )
        tier = case((exact, literal("exact")), else_=literal("compatible")).label("tier")
        base_name = (
            select(m.BaseName.name)
            .where(m.BaseName.base_model_id == m.Version.base_model_id)
            .order_by(m.BaseName.name)
            .limit(1)
            .scalar_subquery()
        )
        score = (
            select(func.max(m.EvalScore.value))
            .where(m.EvalScore.version_id == m.Version.id, m.EvalScore.metric == q.sort)
            .scalar_subquery()
            if q.sort
            else literal(None)
        )
        stmt = (
            select(
                m.Version.number,
                m.Version.digest,
                m.Version.peft_type,
                m.Version.task,
                m.Version.r,
                m.Version.base_model_name,
                m.Repository.namespace,
                m.Repository.name,
                tier,
                func.coalesce(base_name, m.Version.base_model_name).label("base_label"),
                score.label("score"),
            )
            .join(m.Repository, m.Repository.id == m.Version.repository_id)
            .where(tier_cond)
        )
        if q.task:
            stmt = stmt.where(m.Version.task == q.task)
        if q.peft_type:
            stmt = stmt.where(m.Version.peft_type == q.peft_type.upper())
        for metric, minimum in q.min_scores.items():
            stmt = stmt.where(
                exists().where(
                    m.EvalScore.version_id == m.Version.id,
                    m.EvalScore.metric == metric,
                    m.EvalScore.value >= minimum,
                )
            )
        order = [score.desc().nulls_last()] if q.sort else []
        stmt = stmt.order_by(*order, case((exact, 0), else_=1), m.Version.id.desc()).limit(q.limit)
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
        rejected = _explain(session, base, tier_cond) if q.explain else None
        return FitResult(base=base_info(session, base), items=items, rejected=rejected)


def _explain(session: Session, base: m.BaseModel, fits) -> list[FitRejection]:  # type: ignore[no-untyped-def]
    """Why the newest versions outside the answer do not fit (module by module)."""
    from registry.services.bases import base_view

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
