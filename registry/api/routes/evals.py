"""Evaluations (a version's score history), rankings (leaderboard, Pareto front, comparison) and
lineage graphs under /v1 (issue 13): one router per resource, each a thin call to its service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.bounds import INT32_MAX
from registry.entities import (
    Comparison,
    EvalAdd,
    EvalHistory,
    Leaderboard,
    LeaderboardQuery,
    LineageGraph,
    MetricCount,
    MetricsQuery,
    ParetoQuery,
    ParetoResult,
)
from registry.refs import Ref, parse_ref, parse_repo
from registry.services import evaluations, lineage, rankings

evals_router = APIRouter(prefix="/v1", tags=["evaluations"], route_class=ApiRoute)
rankings_router = APIRouter(prefix="/v1", tags=["rankings"], route_class=ApiRoute)
lineage_router = APIRouter(prefix="/v1", tags=["lineage"], route_class=ApiRoute)
routers = (evals_router, rankings_router, lineage_router)

Number = Annotated[int, Path(ge=1, le=INT32_MAX)]
HistoryLimit = Annotated[int, Query(ge=1, le=evaluations.MAX_HISTORY_LIMIT)]


def _numbered(namespace: str, name: str, number: int) -> Ref:
    return Ref(parse_repo(f"{namespace}/{name}"), version=number)


@evals_router.get("/repos/{namespace}/{name}/versions/{number}/evals")
def version_evals(
    namespace: str,
    name: str,
    number: Number,
    reg: RegistryDep,
    principal: PrincipalDep,
    limit: HistoryLimit = evaluations.HISTORY_LIMIT,
) -> EvalHistory:
    """The newest `limit` scores recorded on the version (`total` counts all), and the current one
    per key."""
    return evaluations.history(reg, _numbered(namespace, name, number), limit, principal=principal)


@evals_router.post("/repos/{namespace}/{name}/versions/{number}/evals", status_code=201)
def add_version_evals(
    namespace: str, name: str, number: Number, body: EvalAdd, reg: RegistryDep, principal: PrincipalDep
) -> EvalHistory:
    """Record scores on the version (append-only; needs write on its namespace)."""
    ref = _numbered(namespace, name, number)
    return evaluations.add_scores(reg, ref, body.scores, body.note, principal=principal)


@evals_router.get("/evals")
def evals_by_ref(
    ref: str, reg: RegistryDep, principal: PrincipalDep, limit: HistoryLimit = evaluations.HISTORY_LIMIT
) -> EvalHistory:
    """The history of the version any reference names (ns/name, :N, @alias, @sha256:...)."""
    return evaluations.history(reg, parse_ref(ref), limit, principal=principal)


@evals_router.post("/evals", status_code=201)
def add_evals_by_ref(ref: str, body: EvalAdd, reg: RegistryDep, principal: PrincipalDep) -> EvalHistory:
    """Record scores on the version any reference names."""
    return evaluations.add_scores(reg, parse_ref(ref), body.scores, body.note, principal=principal)


@rankings_router.get("/leaderboard")
def leaderboard(
    q: Annotated[LeaderboardQuery, Query()], reg: RegistryDep, principal: PrincipalDep
) -> Leaderboard:
    """The adapters that fit a base, one row per repository, ranked by a metric."""
    return rankings.leaderboard(reg, q, principal=principal)


@rankings_router.get("/pareto")
def pareto(q: Annotated[ParetoQuery, Query()], reg: RegistryDep, principal: PrincipalDep) -> ParetoResult:
    """Score against cost (params, bytes or rank) for the versions that fit a base; the front flagged."""
    return rankings.pareto(reg, q, principal=principal)


@rankings_router.get("/metrics")
def metrics(
    q: Annotated[MetricsQuery, Query()], reg: RegistryDep, principal: PrincipalDep
) -> list[MetricCount]:
    """The metrics scored on the versions that fit a base (of a task), with how many versions
    report each, most common first: the first is the default wherever a metric is not given."""
    return rankings.common_metrics(reg, q.base, q.task, principal=principal)


@rankings_router.get("/compare")
def compare(
    ref: Annotated[list[str], Query(min_length=rankings.MIN_COMPARE, max_length=rankings.MAX_COMPARE)],
    reg: RegistryDep,
    principal: PrincipalDep,
) -> Comparison:
    """Versions side by side: differing config fields, parameter counts, every current score."""
    return rankings.compare(reg, [parse_ref(r) for r in ref], principal=principal)


@lineage_router.get("/lineage/{target:path}")
def lineage_graph(
    target: str,
    reg: RegistryDep,
    principal: PrincipalDep,
    depth: Annotated[int, Query(ge=1, le=lineage.MAX_DEPTH)] = 8,
) -> LineageGraph:
    """The graph around a version ref or a base (name or fingerprint): ancestors and descendants."""
    return lineage.graph(reg, target, principal=principal, depth=depth)
