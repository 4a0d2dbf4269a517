"""Which adapter is best (issue 13): the leaderboard of a base, the Pareto front of score against
cost, and side-by-side comparison. Rankings read current scores only (services/evaluations.py),
among the versions that fit the base (services/fit_query.py's tiers) and the caller may read.
`compare` lives in services/comparison.py and is served from here too."""

from __future__ import annotations

import bisect
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, case, distinct, func, select, true
from sqlalchemy.orm import Session

from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import read_only
from registry.entities import (
    Leaderboard,
    LeaderboardQuery,
    LeaderboardRow,
    MetricCount,
    ParetoQuery,
    ParetoResult,
)
from registry.services.bases import resolve_base
from registry.services.comparison import MAX_COMPARE, MIN_COMPARE, compare
from registry.services.context import Registry
from registry.services.fit_query import fitting_params, fitting_subquery

DOMINATES_CAP = 20
"""Refs listed per front point; `dominated_count` counts them all."""
MAX_POINTS = 5000
"""Points a Pareto answer lists: the front always, then the best-scoring others."""


def _base_params(
    reg: Registry, session: Session, q: LeaderboardQuery | ParetoQuery, peft_type: str | None, p: Principal
) -> tuple[bool, dict[str, Any]]:
    base = resolve_base(session, q.base, p)
    restricted, params = fitting_params(reg, session, base, task=q.task, peft_type=peft_type, principal=p)
    params.update(rank_metric=q.metric, rank_dataset=q.dataset, rank_split=q.split)
    return restricted, params


def _scores(q: LeaderboardQuery | ParetoQuery) -> ColumnElement[bool]:
    """The current scores of one metric (on one dataset, one split): the partial index
    ix_eval_scores_current. Without a dataset or split, every one counts (the best is taken)."""
    s = m.EvalScore
    cond = and_(s.metric == bindparam("rank_metric"), s.current)
    if q.dataset is not None:
        cond = and_(cond, s.dataset == bindparam("rank_dataset"))
    if q.split is not None:
        cond = and_(cond, s.split == bindparam("rank_split"))
    return cond


# Statements are built once per shape and kept (as fit_query does): building one cost more than
# running it. Everything else travels as bind parameters.
_STATEMENTS: dict[tuple[Any, ...], Select[Any]] = {}


def _leaderboard_statement(dialect: str, restricted: bool, q: LeaderboardQuery) -> Select[Any]:
    key = (
        "leaderboard",
        dialect,
        restricted,
        bool(q.task),
        bool(q.peft_type),
        q.dataset is not None,
        q.split is not None,
        q.lower_is_better,
    )
    cached = _STATEMENTS.get(key)
    if cached is not None:
        return cached
    s = m.EvalScore
    v = m.Version
    carried = [v.repository_id.label("repository_id"), v.number.label("number")]
    fit = fitting_subquery(
        dialect, restricted=restricted, task=bool(q.task), peft_type=bool(q.peft_type), columns=carried
    )
    # Each fitting version's current scores, probed by index per version (LATERAL): a plain
    # join let PostgreSQL hash every score of the metric (40k rows at 20k versions, ~3x slower).
    on = and_(s.version_id == fit.c.id, _scores(q))
    if dialect == "postgresql":
        # OFFSET 0 is a fence: without it the planner turns the LATERAL back into a join.
        sc: Any = select(s.value, s.dataset, s.split).where(on).offset(0).lateral("sc")
        joined = select().select_from(fit).join(sc, true())
        value, dataset, split = sc.c.value, sc.c.dataset, sc.c.split
    else:  # SQLite has no LATERAL; its planner probes the index per version anyway
        joined = select().select_from(fit).join(s, on)
        value, dataset, split = s.value, s.dataset, s.split
    better = value.asc() if q.lower_is_better else value.desc()
    # Rank each repository's scores, keep its best, and cut to the page before reading the
    # versions' other columns: only `limit` rows are joined back.
    ranked = joined.add_columns(
        fit.c.id,
        fit.c.tier,
        value.label("value"),
        dataset.label("dataset"),
        split.label("split"),
        func.row_number()
        .over(partition_by=fit.c.repository_id, order_by=(better, fit.c.number.desc(), dataset, split))
        .label("rn"),
    ).subquery()
    tier_rank = case((ranked.c.tier == "exact", 0), else_=1)
    best = ranked.c.value.asc() if q.lower_is_better else ranked.c.value.desc()
    page = (
        select(ranked.c.id, ranked.c.tier, ranked.c.value, ranked.c.dataset, ranked.c.split)
        .where(ranked.c.rn == 1)
        .order_by(best, tier_rank, ranked.c.id.desc())
        .limit(bindparam("rank_limit", type_=Integer))
        .subquery()
    )
    order = page.c.value.asc() if q.lower_is_better else page.c.value.desc()
    stmt = (
        select(
            page.c.tier,
            page.c.value,
            page.c.dataset,
            page.c.split,
            v.number,
            v.digest,
            v.peft_type,
            v.task,
            v.r,
            v.use_dora,
            v.trainable_params,
            v.adapter_bytes,
            m.Repository.namespace,
            m.Repository.name,
        )
        .join(v, v.id == page.c.id)
        .join(m.Repository, m.Repository.id == v.repository_id)
        .order_by(order, case((page.c.tier == "exact", 0), else_=1), v.id.desc())
    )
    _STATEMENTS[key] = stmt
    return stmt


def leaderboard(reg: Registry, q: LeaderboardQuery, *, principal: Principal) -> Leaderboard:
    """The adapters that fit `q.base`, one row per repository (its best current score on the
    metric: over every dataset and split unless `q.dataset` / `q.split` narrow it), best first.

    Raises:
        NotFound: the base is unknown or `principal` may not read it.
    """
    with read_only(reg.sessions) as session:
        restricted, params = _base_params(reg, session, q, q.peft_type, principal)
        params["rank_limit"] = q.limit
        stmt = _leaderboard_statement(session.get_bind().dialect.name, restricted, q)
        rows = session.connection().execute(stmt, params).all()
    out = []
    for i, r in enumerate(rows, 1):
        repo = f"{r.namespace}/{r.name}"
        out.append(
            LeaderboardRow(
                rank=i,
                repo=repo,
                number=r.number,
                digest=r.digest,
                ref=f"{repo}:{r.number}",
                peft_type=r.peft_type,
                task=r.task,
                r=r.r,
                use_dora=bool(r.use_dora),
                trainable_params=r.trainable_params,
                adapter_bytes=r.adapter_bytes,
                score=r.value,
                metric=q.metric,
                dataset=r.dataset,
                split=r.split,
                tier=r.tier,
            )
        )
    return Leaderboard(
        base=q.base,
        metric=q.metric,
        dataset=q.dataset,
        split=q.split,
        lower_is_better=q.lower_is_better,
        rows=out,
    )


def _cost(kind: str) -> Any:
    # The exact parameter count recorded from the tensors, not the sweep recipes' estimate
    # rank * len(modules) * 2048, which ignores every module's real shape.
    return {"params": m.Version.trainable_params, "bytes": m.Version.adapter_bytes, "rank": m.Version.r}[kind]


def _pareto_statement(dialect: str, restricted: bool, q: ParetoQuery) -> Select[Any]:
    key = (
        "pareto",
        dialect,
        restricted,
        bool(q.task),
        q.dataset is not None,
        q.split is not None,
        q.lower_is_better,
        q.cost,
    )
    cached = _STATEMENTS.get(key)
    if cached is not None:
        return cached
    s = m.EvalScore
    v = m.Version
    # `good` is the score turned so that higher is better: one window serves both directions.
    good = -s.value if q.lower_is_better else s.value
    carried = [
        _cost(q.cost).label("cost"),
        v.number.label("number"),
        v.digest.label("digest"),
        v.peft_type.label("peft_type"),
        v.repository_id.label("repository_id"),
    ]
    fit = fitting_subquery(
        dialect, restricted=restricted, task=bool(q.task), peft_type=False, columns=carried
    )
    # The best current score per version, probed by index per version (a correlated subquery;
    # a join let PostgreSQL hash every score of the metric).
    best = select(func.max(good)).where(s.version_id == fit.c.id, _scores(q)).scalar_subquery()
    # OFFSET 0 fences the subquery: the planner would otherwise copy `best` into every place that
    # reads `good` and probe each version three times.
    scored = select(fit, best.label("good")).where(fit.c.cost.is_not(None)).offset(0).subquery()
    cand = select(scored).where(scored.c.good.is_not(None)).subquery()
    # On the front: better than every strictly cheaper point (RANGE ... 1 PRECEDING: costs are
    # integers) and no worse than any point of the same cost.
    cheaper_best = func.max(cand.c.good).over(order_by=cand.c.cost, range_=(None, -1))
    same_cost_best = func.max(cand.c.good).over(partition_by=cand.c.cost)
    flagged = select(
        cand,
        and_(cand.c.good >= same_cost_best, func.coalesce(cand.c.good > cheaper_best, True)).label(
            "on_front"
        ),
    ).subquery()
    stmt = (
        select(flagged, m.Repository.namespace, m.Repository.name)
        .join(m.Repository, m.Repository.id == flagged.c.repository_id)
        .order_by(flagged.c.cost, flagged.c.good.desc(), flagged.c.id)
    )
    _STATEMENTS[key] = stmt
    return stmt


def pareto(reg: Registry, q: ParetoQuery, *, principal: Principal) -> ParetoResult:
    """Every fitting version with a current score on the metric (its best over datasets and splits
    unless `q.dataset` / `q.split` narrow it), against a cost; the front (no other is at most as costly and at least as good, one of
    them strictly) flagged, each front point with the versions it dominates.

    Raises:
        NotFound: the base is unknown or `principal` may not read it.
    """
    with read_only(reg.sessions) as session:
        restricted, params = _base_params(reg, session, q, None, principal)
        stmt = _pareto_statement(session.get_bind().dialect.name, restricted, q)
        rows = session.connection().execute(stmt, params).all()
        datasets = [q.dataset] if q.dataset is not None else _datasets(session, q, [r.id for r in rows])
    sign = -1.0 if q.lower_is_better else 1.0
    # Plain dicts, validated once as a whole answer: a ParetoPoint(...) per row cost more than the
    # query at a thousand points.
    points: list[dict[str, Any]] = [
        {
            "ref": f"{ns}/{name}:{number}",
            "digest": digest,
            "repo": f"{ns}/{name}",
            "number": number,
            "peft_type": peft_type,
            "score": sign * good,
            "cost": cost,
            "on_front": bool(on_front),
            "dominates": [],
            "dominated_count": 0,
        }
        for (_, _, cost, number, digest, peft_type, _, good, on_front, ns, name) in rows
    ]
    goods = [r.good for r in rows]
    front = [i for i, p in enumerate(points) if p["on_front"]]
    _dominance(points, goods, front)
    others = [] if q.front_only else [i for i, p in enumerate(points) if not p["on_front"]]
    if len(others) + len(front) > MAX_POINTS:  # keep the best-scoring others
        others = sorted(others, key=lambda i: -goods[i])[: max(0, MAX_POINTS - len(front))]
    shown = [points[i] for i in front] + [points[i] for i in others]
    return ParetoResult.model_validate(
        {
            "base": q.base,
            "metric": q.metric,
            "dataset": q.dataset,
            "split": q.split,
            "cost": q.cost,
            "lower_is_better": q.lower_is_better,
            "points": shown,
            "total": len(points),
            "front_size": len(front),
            "datasets": datasets,
        }
    )


def _datasets(session: Session, q: ParetoQuery, version_ids: list[int]) -> list[str | None]:
    """The datasets the candidates' current scores on the metric were taken on (None: scores
    recorded without one): more than one, and a best over datasets ranks incomparable scores."""
    s = m.EvalScore
    found: set[str | None] = set()
    for i in range(0, len(version_ids), 900):  # under SQLite's bound-parameter limit
        cond = and_(s.metric == q.metric, s.current, s.version_id.in_(version_ids[i : i + 900]))
        if q.split is not None:
            cond = and_(cond, s.split == q.split)
        found.update(session.scalars(select(s.dataset).distinct().where(cond)))
    return sorted(found, key=lambda d: (d is None, d or ""))


def _dominance(points: list[dict[str, Any]], goods: list[float], front: list[int]) -> None:
    """Fill each front point's `dominates` (the best-scoring first, capped) and `dominated_count`.

    Along the front (by cost) `good` never decreases, so the front points dominating a point are
    one contiguous run: those at most as costly (a prefix) and at least as good (a suffix). Two
    binary searches per point, and a difference array for the counts: O(n log f), not O(n * f)."""
    costs = [points[i]["cost"] for i in front]
    fgoods = [goods[i] for i in front]
    counts = [0] * (len(front) + 1)
    open_idx = list(range(len(front)))  # front points whose list is not full yet
    order = sorted((-goods[i], i) for i, p in enumerate(points) if not p["on_front"])
    for neg_good, i in order:
        hi = bisect.bisect_right(costs, points[i]["cost"])
        lo = bisect.bisect_left(fgoods, -neg_good)
        if lo >= hi:
            continue
        counts[lo] += 1
        counts[hi] -= 1
        k = bisect.bisect_left(open_idx, lo)
        while k < len(open_idx) and open_idx[k] < hi:
            listed = points[front[open_idx[k]]]["dominates"]
            listed.append(points[i]["ref"])
            if len(listed) >= DOMINATES_CAP:
                open_idx.pop(k)
            else:
                k += 1
    running = 0
    for j, idx in enumerate(front):
        running += counts[j]
        points[idx]["dominated_count"] = running


def common_metrics(
    reg: Registry, base: str, task: str | None = None, *, principal: Principal
) -> list[MetricCount]:
    """The metrics of the current scores on the versions that fit `base` (the leaderboard's
    candidates: every tier, readable by `principal`, of `task` when given), each with how many
    versions report it, most common first (ties by name). The first is the default metric wherever
    one is not given (`adapters plan`'s evidence, the UI's base page).

    Raises:
        NotFound: the base is unknown or `principal` may not read it.
    """
    with read_only(reg.sessions) as session:
        row = resolve_base(session, base, principal)
        restricted, params = fitting_params(reg, session, row, task=task, peft_type=None, principal=principal)
        stmt = _metrics_statement(session.get_bind().dialect.name, restricted, bool(task))
        rows = session.connection().execute(stmt, params).all()
    return [MetricCount(metric=metric, versions=count) for metric, count in rows]


def _metrics_statement(dialect: str, restricted: bool, task: bool) -> Select[Any]:
    key = ("metrics", dialect, restricted, task)
    cached = _STATEMENTS.get(key)
    if cached is not None:
        return cached
    s = m.EvalScore
    fit = fitting_subquery(dialect, restricted=restricted, task=task, peft_type=False)
    count = func.count(distinct(s.version_id))
    stmt: Any = (
        select(s.metric, count)
        .select_from(fit)
        .join(s, and_(s.version_id == fit.c.id, s.current))
        .group_by(s.metric)
        .order_by(count.desc(), s.metric)
    )
    _STATEMENTS[key] = stmt
    return stmt


__all__ = ["MAX_COMPARE", "MIN_COMPARE", "common_metrics", "compare", "leaderboard", "pareto"]
