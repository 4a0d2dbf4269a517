"""Bases: the list, and a base's page (facts, fits by tier, leaderboard, score-vs-cost scatter)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from registry.entities import BaseInfo, FitItem, FitQuery, LeaderboardQuery, ParetoQuery
from registry.errors import RegistryError
from registry.jobspec.lineage import ExportLineage, read_lineage
from registry.refs import parse_ref
from registry.services import bases, rankings, versions
from registry.services.fit_query import fit
from registry.ui import plot
from registry.ui.render import PageRoute, RegistryDep, UiPrincipal, page

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)

FIT_LIMIT = 500
Text = Annotated[str | None, Query(max_length=256)]


@router.get("/bases", response_class=HTMLResponse)
def bases_page(request: Request, reg: RegistryDep, principal: UiPrincipal) -> HTMLResponse:
    return page(request, "bases.html", bases=bases.list_bases(reg, principal=principal))


def _tiers(items: list[FitItem], own: str | None) -> dict[str, list[FitItem]]:
    """Fits by tier, less `own`: the adapter an exported model was made from (its weights are in
    the model already; its shapes fit, but loading it again would apply it twice)."""
    out: dict[str, list[FitItem]] = {"exact": [], "compatible": []}
    for item in items:
        if item.digest != own:
            out.setdefault(item.tier, []).append(item)
    return out


def exported_from(base: BaseInfo) -> dict[str, str | None] | None:
    """What an exported model was made from (its lineage): the adapter's reference and digest,
    and the base's name and fingerprint; None for a base that was not exported."""
    lin = read_lineage(base.lineage)
    if not isinstance(lin, ExportLineage):
        return None
    return {
        "adapter": lin.adapter,
        "adapter_digest": lin.adapter_digest,
        "base": lin.base,
        "base_fingerprint": lin.base_fingerprint,
    }


@router.get("/base", response_class=HTMLResponse)
def base_page(
    request: Request,
    reg: RegistryDep,
    principal: UiPrincipal,
    ref: Annotated[str, Query(min_length=1, max_length=4096)],
    metric: Text = None,
    dataset: Text = None,
    cost: Literal["params", "bytes", "rank"] = "params",
    lower_is_better: bool = False,
) -> HTMLResponse:
    """`ref` is a base name or fingerprint; `metric` defaults to the most common one."""
    base = bases.get_base(reg, ref, principal=principal)  # NotFound when unreadable
    origin = exported_from(base)
    if origin and origin["adapter"]:
        try:  # the reference of an adapter this reader may not read is not shown (as in lineage)
            versions.resolve(reg, parse_ref(origin["adapter"]), principal=principal)
        except RegistryError:
            origin["adapter"] = None
    fits = fit(reg, FitQuery(base=ref, limit=FIT_LIMIT), principal=principal)
    # The default metric is the most common one among fitting versions: the rule `adapters plan` uses.
    metrics = [c.metric for c in rankings.common_metrics(reg, ref, principal=principal)]
    chosen = metric or (metrics[0] if metrics else None)
    board = front = scatter = None
    if chosen:
        board = rankings.leaderboard(
            reg,
            LeaderboardQuery(
                base=ref, metric=chosen, dataset=dataset or None, lower_is_better=lower_is_better
            ),
            principal=principal,
        )
        front = rankings.pareto(
            reg,
            ParetoQuery(
                base=ref, metric=chosen, dataset=dataset or None, cost=cost, lower_is_better=lower_is_better
            ),
            principal=principal,
        )
        scatter = plot.scatter(front.points, cost, chosen) if front.points else None
    if chosen and chosen not in metrics:
        metrics.append(chosen)
    return page(
        request,
        "base.html",
        base=base,
        ref=ref,
        tiers=_tiers(fits.items, origin["adapter_digest"] if origin else None),
        origin=origin,
        fit_capped=len(fits.items) >= FIT_LIMIT,
        metrics=metrics,
        metric=chosen,
        dataset=dataset or "",
        cost=cost,
        lower_is_better=lower_is_better,
        board=board,
        front=front,
        scatter=scatter,
    )
