"""The fit query: which adapters fit this base? Answered from indexed columns, not adapter files.

Tier exact: trained on these weights (linked to this base, or to another base of the same
fingerprint: namespaces register the same weights each under its own names). Tier compatible: linked
to another base with the same structure signature, or unlinked with every recorded module present in
this base with matching in/out features. Either way only versions the caller may read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    String,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal,
    not_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from registry.access.checks import readable
from registry.access.policy import readable_namespaces
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import read_only
from registry.entities import BaseInfo, FitItem, FitQuery, FitRejection, FitResult
from registry.refs import RepoName
from registry.services.base_link import base_shape_keys
from registry.services.bases import (
    base_info,
    base_view,
    readable_base_names,
    readable_bases,
    resolve_base,
)
from registry.services.context import Registry
from registry.services.qlora import QLORA_OK_VERDICTS, parse_variant

EXPLAIN_LIMIT = 50


def _parts(tier: str, dialect: str) -> list[Select[int, str]]:
    """The versions that fit, as index-driven parts (no scan of all versions), each selecting
    (id, tier) from `versions` so that filters apply inside each part. Everything that varies is
    a bind parameter: base_id, fingerprint ('' for a structure-only base: matches none), structure,
    shape_keys."""
    same_weights = select(m.BaseModel.id).where(
        (m.BaseModel.id == bindparam("base_id")) | (m.BaseModel.fingerprint == bindparam("fingerprint"))
    )
    exact = select(m.Version.id, literal("exact").label("tier")).where(
        m.Version.base_model_id.in_(same_weights)
    )
    same_structure = select(m.BaseModel.id).where(
        m.BaseModel.structure_signature == bindparam("structure"),
        m.BaseModel.id != bindparam("base_id"),
        m.BaseModel.fingerprint.is_(None) | (m.BaseModel.fingerprint != bindparam("fingerprint")),
    )
    linked = select(m.Version.id, literal("compatible").label("tier")).where(
        m.Version.base_model_id.in_(same_structure)
    )
    # Unlinked versions whose every recorded module this base has, with the same shapes: look the
    # base's module keys up in the partial index of unlinked version modules, count per version.
    vm = m.VersionModule
    # On PostgreSQL the keys travel as one array parameter: the SQL text is then the same for every
    # base, so psycopg prepares it and the server stops re-planning it. Elsewhere, one expanding
    # parameter.
    in_keys = (
        vm.shape_key == any_(bindparam("shape_keys", type_=ARRAY(String)))
        if dialect == "postgresql"
        else vm.shape_key.in_(bindparam("shape_keys", expanding=True))
    )
    matched = (
        select(vm.version_id)
        # Bare `unlinked`: the partial index's predicate.
        .where(vm.unlinked, in_keys)
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


@dataclass(frozen=True)
class Shape:
    """What decides the statement's text; the values travel as bind parameters."""

    tier: str
    task: bool
    peft_type: bool
    min_scores: int
    qlora_ok: bool
    sort: bool
    dialect: str
    restricted: bool = False
    """Only versions in the namespaces of the `readable_ns` parameter, or in public ones."""
    qlora_compute: bool = False
    """The 4-bit variant asked about names its compute dtype."""

    @classmethod
    def of(cls, q: FitQuery, dialect: str, restricted: bool = False) -> Shape:
        return cls(
            q.tier,
            bool(q.task),
            bool(q.peft_type),
            len(q.min_scores),
            q.qlora_ok or q.qlora_variant is not None,
            bool(q.sort),
            dialect,
            restricted,
            q.qlora_variant is not None and parse_variant(q.qlora_variant)[2] is not None,
        )


def _filtered(part: Select[int, str], shape: Shape) -> Select[int, str]:
    """The query's filters, applied inside each part so they cut rows before ranking."""
    part = _not_forced(part)
    if shape.restricted:  # inside each part, so the limit counts readable versions only
        public = exists().where(m.Namespace.name == m.Repository.namespace, m.Namespace.public)
        part = part.where(
            m.Version.repository_id.in_(
                select(m.Repository.id).where(
                    m.Repository.namespace.in_(bindparam("readable_ns", expanding=True)) | public
                )
            )
        )
    if shape.task:
        part = part.where(m.Version.task == bindparam("task"))
    if shape.peft_type:
        part = part.where(m.Version.peft_type == bindparam("peft_type"))
    if shape.qlora_ok:
        check = exists().where(
            m.QloraCheck.version_id == m.Version.id,
            m.QloraCheck.verdict.in_(QLORA_OK_VERDICTS),
            m.QloraCheck.quant_type == bindparam("qlora_quant"),
            m.QloraCheck.double_quant == bindparam("qlora_double_quant"),
        )
        if shape.qlora_compute:
            check = check.where(m.QloraCheck.compute_dtype == bindparam("qlora_compute"))
        part = part.where(check)
    for i in range(shape.min_scores):
        part = part.where(
            exists().where(
                m.EvalScore.version_id == m.Version.id,
                m.EvalScore.metric == bindparam(f"min_metric_{i}"),
                m.EvalScore.current,
                m.EvalScore.value >= bindparam(f"min_value_{i}"),
            )
        )
    return part


def _statement(shape: Shape) -> Select[Any]:
    """The whole fit query for one shape. Built once per shape and kept: constructing it cost more
    than running it, and a reused statement object keeps its memoized cache key."""
    cached = _STATEMENTS.get(shape)
    if cached is not None:
        return cached
    parts = [_filtered(p, shape) for p in _parts(shape.tier, shape.dialect)]
    fitting = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    score = (
        select(func.max(m.EvalScore.value))
        .where(
            m.EvalScore.version_id == fitting.c.id,
            m.EvalScore.metric == bindparam("sort_metric"),
            m.EvalScore.current,
        )
        .scalar_subquery()
        if shape.sort
        else literal(None)
    )
    # Rank and cut on (id, tier, score) alone; read versions, repositories and names for the page.
    tier_rank = case((fitting.c.tier == "exact", 0), else_=1)
    order = [score.desc().nulls_last()] if shape.sort else []
    ranked = (
        select(fitting.c.id, fitting.c.tier, score.label("score"))
        .order_by(*order, tier_rank, fitting.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .subquery()
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
            m.Version.base_model_id,
            m.Version.base_model_name,
        )
        .join(ranked, ranked.c.id == m.Version.id)
        .join(m.Repository, m.Repository.id == m.Version.repository_id)
        .order_by(
            *([ranked.c.score.desc().nulls_last()] if shape.sort else []),
            case((ranked.c.tier == "exact", 0), else_=1),
            m.Version.id.desc(),
        )
    )
    _STATEMENTS[shape] = stmt
    return stmt


_STATEMENTS: dict[Shape, Select[Any]] = {}


def _params(q: FitQuery, base: m.BaseModel, keys: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "base_id": base.id,
        "fingerprint": base.fingerprint or "",
        "structure": base.structure_signature,
        "shape_keys": keys,
        "limit": q.limit,
        "task": q.task,
        "peft_type": q.peft_type.upper() if q.peft_type else None,
        "sort_metric": q.sort,
    }
    params["qlora_quant"], params["qlora_double_quant"], params["qlora_compute"] = parse_variant(
        q.qlora_variant or "nf4"
    )
    for i, (metric, minimum) in enumerate(sorted(q.min_scores.items())):
        params[f"min_metric_{i}"] = metric
        params[f"min_value_{i}"] = minimum
    return params


def _shape_keys(reg: Registry, session: Session, base_id: int) -> tuple[list[str], int]:
    """(the version-module keys a base satisfies, its module count). A base's module table never
    changes once it is registered, so this is cached on the Registry."""
    cached = reg.cache.get(("shape_keys", base_id))
    if cached is None:
        rows = session.execute(
            select(m.BaseModule.name, m.BaseModule.in_features, m.BaseModule.out_features).where(
                m.BaseModule.base_model_id == base_id
            )
        ).all()
        keys = [k for r in rows for k in base_shape_keys(r.name, r.in_features, r.out_features)]
        cached = reg.cache[("shape_keys", base_id)] = (keys, len(rows))
    return cached  # type: ignore[no-any-return]


def fit(reg: Registry, q: FitQuery, *, principal: Principal) -> FitResult:
    """The versions that fit `q.base`, among those `principal` may read (a base it may not read is
    answered as unknown)."""
    with read_only(reg.sessions) as session:
        base = resolve_base(session, q.base, principal)
        keys, module_count = _shape_keys(reg, session, base.id)
        names = readable_namespaces(principal)
        shape = Shape.of(q, session.get_bind().dialect.name, restricted=names is not None)
        params = _params(q, base, keys)
        if names is not None:
            params["readable_ns"] = sorted(names)
        rows = session.connection().execute(_statement(shape), params).all()
        labels = _base_labels(session, principal, {r.base_model_id for r in rows} - {None})
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
                base_model=labels.get(r.base_model_id) or r.base_model_name,
                score=r.score,
            )
            for r in rows
        ]
        rejected = None
        if q.explain:  # what does not fit this base at all, filters aside
            fits = m.Version.id.in_(
                union_all(
                    *[_not_forced(p).with_only_columns(m.Version.id) for p in _parts(q.tier, shape.dialect)]
                )
            )
            rejected = _explain(
                session, base, fits, params, readable(principal, m.Repository.namespace), principal
            )
        info = base_info(session, base, module_count=module_count, reader=principal)
        return FitResult(base=info, items=items, rejected=rejected)


def _base_labels(session: Session, reader: Principal, base_ids: set[int]) -> dict[int, str]:
    """base id -> the first of its names `reader` may read (a base without one: no label; the
    version's recorded base_model_name is shown instead)."""
    if not base_ids:
        return {}
    by_base: dict[int, list[str]] = {}
    for base_id, name in session.execute(
        select(m.BaseName.base_model_id, m.BaseName.name)
        .where(m.BaseName.base_model_id.in_(sorted(base_ids)))
        .order_by(m.BaseName.name)
    ):
        by_base.setdefault(base_id, []).append(name)
    shown = set(readable_base_names(session, reader, [n for names in by_base.values() for n in names]))
    out = {}
    for base_id, names in by_base.items():
        first = next((n for n in names if n in shown), None)
        if first is not None:
            out[base_id] = first
    return out


def _explain(
    session: Session, base: m.BaseModel, fits, params: dict[str, Any], visible, reader: Principal
) -> list[FitRejection]:  # type: ignore[no-untyped-def]
    """Why the newest versions outside the answer do not fit (module by module)."""
    view = base_view(session, base, reader=reader)
    rows = session.execute(
        select(
            m.Version.id,
            m.Version.number,
            m.Version.base_model_name,
            m.Repository.namespace,
            m.Repository.name,
        )
        .join(m.Repository, m.Repository.id == m.Version.repository_id)
        .where(not_(fits), visible)
        .order_by(m.Version.id.desc())
        .limit(EXPLAIN_LIMIT),
        {k: params[k] for k in ("base_id", "fingerprint", "structure", "shape_keys")},
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


def fitting_subquery(
    dialect: str, *, restricted: bool, task: bool, peft_type: bool, columns: Sequence[Any] = ()
) -> Any:
    """(id, tier, *columns) of every version that fits the base of the `fitting_params` (all
    tiers, forced pushes excluded; with `restricted`, only readable ones), as a subquery: the fit
    rule, for the rankings (services/rankings.py) to join their scores to. Its text depends only
    on the arguments, so callers build their statements once and keep them. `columns` (of
    `versions`) are read inside each part: joining `versions` again outside made PostgreSQL hash
    the whole table."""
    shape = Shape(
        tier="all",
        task=task,
        peft_type=peft_type,
        min_scores=0,
        qlora_ok=False,
        sort=False,
        dialect=dialect,
        restricted=restricted,
    )
    parts = [_filtered(p, shape).add_columns(*columns) for p in _parts("all", dialect)]
    return union_all(*parts).subquery("fitting")


def fitting_params(
    reg: Registry,
    session: Session,
    base: m.BaseModel,
    *,
    task: str | None,
    peft_type: str | None,
    principal: Principal,
) -> tuple[bool, dict[str, Any]]:
    """(restricted, the bind parameters of `fitting_subquery` for `base` as `principal` sees it)."""
    names = readable_namespaces(principal)
    keys, _ = _shape_keys(reg, session, base.id)
    params: dict[str, Any] = {
        "base_id": base.id,
        "fingerprint": base.fingerprint or "",
        "structure": base.structure_signature,
        "shape_keys": keys,
        "task": task,
        "peft_type": peft_type.upper() if peft_type else None,
    }
    if names is not None:
        params["readable_ns"] = sorted(names)
    return names is not None, params


def _shape_keys_of(reg: Registry, session: Session, base_ids: Sequence[int]) -> dict[int, set[str]]:
    """`_shape_keys` of many bases: those not cached yet read in one query, not one each."""
    missing = [b for b in base_ids if ("shape_keys", b) not in reg.cache]
    if missing:
        found: dict[int, list[tuple[str, int, int]]] = {b: [] for b in missing}
        for base_id, name, fan_in, fan_out in session.execute(
            select(
                m.BaseModule.base_model_id,
                m.BaseModule.name,
                m.BaseModule.in_features,
                m.BaseModule.out_features,
            ).where(m.BaseModule.base_model_id.in_(missing))
        ):
            found[base_id].append((name, fan_in, fan_out))
        for base_id, rows in found.items():
            keys = [k for r in rows for k in base_shape_keys(*r)]
            reg.cache[("shape_keys", base_id)] = (keys, len(rows))
    return {b: set(reg.cache[("shape_keys", b)][0]) for b in base_ids}


def bases_fitting(
    reg: Registry, repo: RepoName, number: int, *, principal: Principal
) -> list[tuple[BaseInfo, str]]:
    """The bases `principal` may read that version `number` of `repo` fits, each with its tier,
    oldest base first: the fit query's rule (`_parts`) asked the other way round, for one version
    against every base at once. The version page asked `fit` once per base (about twenty
    statements each); this is six or seven whatever the number of bases. Nothing for a version
    forced past the fit check, or one `principal` may not read.

    Same weights (the version's base, or one of its fingerprint): exact. A linked version on
    another base of the same structure: compatible. An unlinked version: compatible with every
    base that has each module it records, with matching shapes."""
    with read_only(reg.sessions) as session:
        own = aliased(m.BaseModel)
        found = session.execute(
            select(m.Version.id, m.Version.fit_override, own.id, own.fingerprint, own.structure_signature)
            .join(m.Repository, m.Repository.id == m.Version.repository_id)
            .outerjoin(own, own.id == m.Version.base_model_id)
            .where(
                m.Repository.namespace == repo.namespace,
                m.Repository.name == repo.name,
                m.Version.number == number,
                readable(principal, m.Repository.namespace),
            )
        ).one_or_none()
        if found is None or found.fit_override is not None:
            return []
        version_id, _, base_id, fingerprint, structure = found
        candidates = readable_bases(session, principal)
        out: list[tuple[BaseInfo, str]] = []
        if base_id is not None:
            for b in candidates:
                if b.id == base_id or (b.fingerprint is not None and b.fingerprint == fingerprint):
                    out.append((b, "exact"))
                elif structure is not None and b.structure_signature == structure:
                    out.append((b, "compatible"))
            return out
        modules = session.execute(
            select(m.VersionModule.shape_key, m.VersionModule.module_count).where(
                m.VersionModule.version_id == version_id, m.VersionModule.unlinked
            )
        ).all()
        if not modules:
            return []
        need = max(c for _, c in modules)
        keys = _shape_keys_of(reg, session, [b.id for b in candidates])
        return [(b, "compatible") for b in candidates if sum(k in keys[b.id] for k, _ in modules) == need]
