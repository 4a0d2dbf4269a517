"""What the Hub routers share: the repository id from the path (`ns/name` or a bare `name`, as
the Hub's ids are), a revision read from the raw path, and the Hub's timestamp format."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request

from registry.api.hub.errors import HubRoute

F = TypeVar("F", bound=Callable[..., Any])

bare_router = APIRouter(route_class=HubRoute)
"""The bare-name forms (`/{name}...`) of every hub_route. Included after every router's
two-segment forms, so that `ns/name` is never read as a bare name followed by a tail of another
route (`/api/models/x/tree/refs` is repository x/tree's refs, not x's tree at `refs`)."""


def repo_id(request: Request) -> str:
    params = request.path_params
    namespace = params.get("namespace")
    return f"{namespace}/{params['name']}" if namespace else str(params["name"])


RepoIdDep = Annotated[str, Depends(repo_id)]


def hub_route(
    router: APIRouter, tail: str, prefix: str = "", methods: tuple[str, ...] = ("GET",)
) -> Callable[[F], F]:
    """Register a handler at `{prefix}/{namespace}/{name}{tail}` on `router` and at
    `{prefix}/{name}{tail}` on `bare_router` (matched after every two-segment form)."""

    def register(func: F) -> F:
        for on, repo in ((router, "/{namespace}/{name}"), (bare_router, "/{name}")):
            # Not in /openapi.json: the repository id is read from either path shape (repo_id),
            # which the schema cannot express; the Hub's own clients are the contract here.
            on.api_route(f"{prefix}{repo}{tail}", methods=list(methods), include_in_schema=False)(func)
        return func

    return register


def raw_segments(request: Request) -> list[str]:
    """The request path as sent, split on '/' before percent-decoding (the segments are still
    encoded): huggingface_hub sends a revision with a slash as one segment (`refs%2Fheads%2Fmain`),
    which the decoded path the router matched on cannot tell from two."""
    raw = request.scope.get("raw_path")
    text = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
    return text.partition("?")[0].split("/")


def revision_and_path(request: Request, marker: str, prefix: str = "") -> tuple[str, str]:
    """For a route `{prefix}/{repo}/{marker}/{revision}[/{path}]`: the revision (one raw segment,
    decoded) and the file path after it (decoded), read from the raw path."""
    segments = raw_segments(request)
    repo_parts = 2 if request.path_params.get("namespace") else 1
    at = 1 + len([p for p in prefix.split("/") if p]) + repo_parts  # segments[0] is '' (leading /)
    if len(segments) > at + 1 and unquote(segments[at]) == marker:
        return unquote(segments[at + 1]), unquote("/".join(segments[at + 2 :]))
    # Not the shape expected (a proxy that rewrote the path): what the router decoded.
    return str(request.path_params.get("revision", "")), str(request.path_params.get("path", ""))


def iso(moment: datetime) -> str:
    """2024-01-02T03:04:05.000Z: what the Hub sends and huggingface_hub parses (`moment` is aware:
    every DateTime column reads back in UTC, registry.db.types.UTCDateTime)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
