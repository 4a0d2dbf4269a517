"""The Hub's discovery calls as huggingface_hub makes them: `list_models` (`hf models ls`),
`list_repo_commits` and `get_paths_info`. A thin translation onto `registry.services.hub_discovery`;
pages follow `Link: <...>; rel="next"` as the Hub's do."""

from __future__ import annotations

import html
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request, Response

from registry.api.background import every
from registry.api.bodies import check_size
from registry.api.deps import PrincipalDep, RegistryDep
from registry.api.hub.common import RepoIdDep, hub_route, iso, raw_segments
from registry.api.hub.errors import HubRoute
from registry.api.hub.models import tree_entry
from registry.bounds import MAX_VERSION_FILES, loads_strict
from registry.errors import BadRequest
from registry.services import hub, hub_discovery
from registry.services.context import Registry
from registry.services.downloads import FLUSH_S
from registry.services.hub_discovery import COMMITS_PAGE, LIST_PAGE, HubCommit, ListedModel, ModelQuery

router = APIRouter(route_class=HubRoute)
TRUE = frozenset({"1", "true", "yes"})


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUE


def _limit(raw: str | None, most: int) -> int:
    if raw is None:
        return most
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise BadRequest(f"limit must be a positive integer, not {raw[:20]!r}", field="limit")
    return min(int(raw), most)  # the client asks for as many as it wants, and pages on


def _next_link(request: Request, response: Response, **params: str) -> None:
    url = request.url.include_query_params(**params)
    response.headers["Link"] = f'<{url}>; rel="next"'


@router.get("/api/models", include_in_schema=False)
def list_models(
    request: Request, response: Response, reg: RegistryDep, principal: PrincipalDep
) -> list[dict[str, Any]]:
    """`HfApi.list_models`, `hf models ls`: search (in the id), author (the namespace), filter
    (each a tag, the library or the pipeline tag; all must match), pipeline_tag, sort (+
    direction=1 for ascending), limit, and the expansions full, cardData, config and expand."""
    q = request.query_params
    expand = {*q.getlist("expand"), *q.getlist("expand[]")}
    full = _flag(q.get("full"))
    query = ModelQuery(
        search=q.get("search") or None,
        author=q.get("author") or None,
        filters=tuple(f for f in q.getlist("filter") if f),
        pipeline_tag=q.get("pipeline_tag") or None,
        sort=q.get("sort") or None,
        ascending=q.get("direction") == "1",
        limit=_limit(q.get("limit"), LIST_PAGE),
        cursor=q.get("cursor"),
        files=full or bool(expand & {"siblings", "usedStorage"}),
        cards=_flag(q.get("cardData")) or "cardData" in expand,
        # Filters no repository here meets: nothing is gated or served by an inference provider.
        nothing=_flag(q.get("gated")) or "inference" in q or "inference_provider" in q,
    )
    page = hub_discovery.list_models(reg, query, principal)
    if page.next_cursor is not None:
        _next_link(request, response, cursor=page.next_cursor)
    return [
        _listed(c, expand or None, full=full, config=_flag(q.get("config")), card=query.cards)
        for c in page.items
    ]


def _listed(
    c: ListedModel, expand: set[str] | None, *, full: bool, config: bool, card: bool
) -> dict[str, Any]:
    """One repository as the Hub lists it: with `expand`, only the properties named (and id)."""
    values: dict[str, Any] = {
        "author": c.repo_id.split("/")[0] if "/" in c.repo_id else None,
        "sha": c.commit,
        "lastModified": iso(c.last_modified),
        "createdAt": iso(c.created_at),
        "private": c.private,
        "gated": False,
        "disabled": False,
        "downloads": c.downloads,
        "downloadsAllTime": c.downloads,
        "likes": 0,
        "trendingScore": 0,
        "tags": c.tags,
        "pipeline_tag": c.pipeline_tag,
        "library_name": c.library_name,
    }
    if c.files is not None:
        values["siblings"] = [{"rfilename": f.path} for f in c.files]
        values["usedStorage"] = sum(f.size for f in c.files)
    if card or (expand and "cardData" in expand):
        values["cardData"] = c.card_data
    if config or (expand and "config" in expand):
        values["config"] = c.config
    if expand is not None:
        values = {k: v for k, v in values.items() if k in expand}
    elif not full:
        values.pop("siblings", None)
        values.pop("usedStorage", None)
    return {"_id": c.commit, "id": c.repo_id, "modelId": c.repo_id, **values}


@hub_route(router, "/commits/{revision:path}", prefix="/api/models")
def list_commits(
    request: Request, response: Response, repo: RepoIdDep, reg: RegistryDep, principal: PrincipalDep
) -> list[dict[str, Any]]:
    """`HfApi.list_repo_commits`: the versions up to the revision, newest first; `after` (a
    version number, from the Link header) continues below it; `expand[]=formatted` adds the
    HTML-escaped title and message."""
    revision = _revision(request, "commits")
    q = request.query_params
    before = q.get("after")
    if before is not None and not (before.isascii() and before.isdigit() and len(before) <= 9):
        raise BadRequest("invalid cursor: pass the Link header's next URL as it came", field="after")
    commits, nxt = hub_discovery.list_commits(
        reg,
        repo,
        revision,
        principal,
        int(before) if before is not None else None,
        _limit(q.get("limit"), COMMITS_PAGE),
    )
    if nxt is not None:
        _next_link(request, response, after=str(nxt))
    formatted = "formatted" in {*q.getlist("expand[]"), *q.getlist("expand")}
    return [_commit(c, formatted) for c in commits]


def _commit(c: HubCommit, formatted: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": c.commit,
        "title": c.title,
        "message": c.message,
        "authors": [{"user": a, "avatar": None} for a in c.authors],
        "date": iso(c.date),
    }
    if formatted:
        answer["formatted"] = {"title": html.escape(c.title), "message": html.escape(c.message)}
    return answer


def _revision(request: Request, marker: str) -> str:
    """The revision after `marker` in the raw path: one segment as huggingface_hub sends it
    (`refs%2Fheads%2Fmain`), or the rest of the path from a client that did not encode it."""
    segments = raw_segments(request)
    repo_parts = 2 if request.path_params.get("namespace") else 1
    at = 3 + repo_parts  # '', 'api', 'models', the repository id
    if len(segments) > at and unquote(segments[at]) == marker:
        return unquote("/".join(segments[at + 1 :]))
    return str(request.path_params.get("revision", ""))


@hub_route(router, "/paths-info/{revision:path}", prefix="/api/models", methods=("POST",))
async def paths_info(
    request: Request, repo: RepoIdDep, reg: RegistryDep, principal: PrincipalDep
) -> list[dict[str, Any]]:
    """`HfApi.get_paths_info`: the files and folders among `paths` (a form, as huggingface_hub
    sends it, or a JSON object) at the revision; paths that do not exist are left out. With
    `expand`, each carries the commit that last changed it."""
    revision = _revision(request, "paths-info")
    raw, kind = await request.body(), request.headers.get("content-type", "")
    check_size(raw)

    def answer() -> list[dict[str, Any]]:
        rev = hub.resolve_revision(reg, repo, revision, principal)  # who may read, before the body is parsed
        paths, expand = _paths_body(raw, kind)
        entries = hub_discovery.paths_info(rev, paths)
        found = [tree_entry(e) for e in entries]
        if expand:
            last = hub_discovery.last_commits(reg, rev, entries)
            for e, out in zip(entries, found, strict=True):
                c = last[e.path]
                out["lastCommit"] = {"id": c.commit, "title": c.title, "date": iso(c.date)}
        return found

    return await anyio.to_thread.run_sync(answer)


def _paths_body(raw: bytes, content_type: str) -> tuple[list[str], bool]:
    """`paths` (repeated) and `expand` from a form body, or {"paths": [...], "expand": bool}."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        body = loads_strict(raw, "the body", BadRequest, storable=False)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        paths, expand = body.get("paths", []), body.get("expand", False)
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise BadRequest("paths must be a list of strings", field="paths")
        if not isinstance(expand, bool):
            raise BadRequest("expand must be true or false", field="expand")
    else:
        try:
            fields = parse_qsl(
                raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_VERSION_FILES + 10
            )
        except (UnicodeDecodeError, ValueError) as err:
            raise BadRequest(f"the body is not a form of paths: {err}") from err
        paths = [v for k, v in fields if k in ("paths", "paths[]")]
        expand = any(k == "expand" and _flag(v) for k, v in fields)
    if len(paths) > MAX_VERSION_FILES:
        raise BadRequest(f"{len(paths)} paths; ask for at most {MAX_VERSION_FILES} at a time", field="paths")
    return paths, expand


def counting_downloads(reg: Registry) -> AbstractAsyncContextManager[None]:
    """While the server runs, add the downloads it counted to the database every FLUSH_S
    seconds; when it stops, the rest (services/downloads.py)."""
    flush = partial(reg.downloads.flush, reg.sessions)
    return every(FLUSH_S, flush, flush)
