"""Repositories (search and filters) and the version page."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from registry.access.principal import Principal
from registry.bounds import INT32_MAX
from registry.entities import VersionFilter, VersionInfo
from registry.errors import NotFound
from registry.refs import Ref, parse_repo
from registry.services import bases, evaluations, lineage, model_card, queries, versions
from registry.services.context import Registry
from registry.services.fit_query import bases_fitting
from registry.ui import card, svg, usage
from registry.ui.render import PageRoute, RegistryDep, UiPrincipal, image_hosts, page, repo_url

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)

Text = Annotated[str | None, Query(max_length=256)]
CARD_BYTES = 256 * 1024
"""The most of a README the version page renders (a card is a few KiB; the rest is cut, and said)."""
CARD_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
"""The files of a version its card may show as images (served with their type). Not SVG: an SVG
opened as a page could run script in this origin."""


@router.get("", response_class=HTMLResponse)
@router.get("/repos", response_class=HTMLResponse)
def repositories(
    request: Request,
    reg: RegistryDep,
    principal: UiPrincipal,
    q: Text = None,
    task: Text = None,
    base: Text = None,
    peft_type: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """One row per repository (its latest version), filtered by task, base and PEFT type, and
    searched by a substring of the name."""
    flt = VersionFilter(task=task or None, base=base or None, peft_type=peft_type or None, latest_only=True)
    # One page, searched in SQL (three queries), where the page scanned up to four pages of 500
    # and searched them in Python.
    got = queries.list_versions(reg, flt, queries.MAX_LIMIT, principal=principal, search=q)
    rows, capped = sorted(got.items, key=lambda r: r.repo), got.next_cursor is not None
    choices = queries.latest_facets(reg, principal=principal)
    chosen = {"q": q or "", "task": task or "", "base": base or "", "peft_type": peft_type or ""}
    return page(request, "repos.html", rows=rows, capped=capped, choices=choices, chosen=chosen)


@router.get("/r/{namespace}/{name}", response_class=HTMLResponse)
def repository(namespace: str, name: str, reg: RegistryDep, principal: UiPrincipal) -> RedirectResponse:
    """A repository's page is its latest version's."""
    info = versions.resolve(reg, Ref(parse_repo(f"{namespace}/{name}")), principal=principal)
    return RedirectResponse(repo_url(info.repo, info.version), status_code=303)


def _fits(reg: Registry, info: VersionInfo, principal: Principal) -> list[dict[str, str]]:
    """The bases this version fits, with the tier (one ask of the fit rule for every readable base)."""
    out = []
    for b, tier in bases_fitting(reg, parse_repo(info.repo), info.version, principal=principal):
        label = b.names[0].name if b.names else (b.fingerprint or f"base {b.id}")
        out.append({"base": label, "ref": b.fingerprint or label, "tier": tier})
    return out


@router.get("/r/{namespace}/{name}/{number}", response_class=HTMLResponse)
def version_page(
    request: Request,
    namespace: str,
    name: str,
    number: Annotated[int, Path(ge=1, le=INT32_MAX)],
    reg: RegistryDep,
    principal: UiPrincipal,
) -> HTMLResponse:
    ref = Ref(parse_repo(f"{namespace}/{name}"), version=number)
    info = versions.resolve(reg, ref, principal=principal)  # NotFound for a private repository
    history = evaluations.history(reg, ref, principal=principal)
    graph = lineage.graph(reg, str(ref), principal=principal)
    siblings = queries.list_versions(reg, VersionFilter(repo=info.repo), 50, principal=principal).items
    fits = _fits(reg, info, principal)
    base = None
    if info.base_fingerprint:
        try:
            base = bases.get_base(reg, info.base_fingerprint, principal=principal)
        except NotFound:
            base = None
    readme = model_card.readme_text(reg, info.files, CARD_BYTES)
    card_html = None
    if readme is not None:
        card_html = card.render(readme[0], image_hosts(request))
    return page(
        request,
        "version.html",
        v=info,
        card=card_html,
        card_cut=readme is not None and readme[1],
        use=usage.usage(info, str(request.base_url).rstrip("/")),
        config=json.dumps(info.config, indent=2, sort_keys=True),
        history=history,
        metrics=Counter(r.metric for r in history.current),
        drawing=svg.lineage(graph) if graph.nodes else None,
        graph=graph,
        siblings=siblings,
        fits=fits,
        base=base,
    )
