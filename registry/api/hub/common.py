"""What the Hub routers share: the repository id from the path (`ns/name` or a bare `name`, as
the Hub's ids are), and the Hub's timestamp format."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request

F = TypeVar("F", bound=Callable[..., Any])


def repo_id(request: Request) -> str:
    params = request.path_params
    namespace = params.get("namespace")
    return f"{namespace}/{params['name']}" if namespace else str(params["name"])


RepoIdDep = Annotated[str, Depends(repo_id)]


def hub_route(
    router: APIRouter, tail: str, prefix: str = "", methods: tuple[str, ...] = ("GET",)
) -> Callable[[F], F]:
    """Register a handler at `{prefix}/{namespace}/{name}{tail}` and at `{prefix}/{name}{tail}`
    (the two-segment form first, so `ns/name` is never read as a bare name)."""

    def register(func: F) -> F:
        for repo in ("/{namespace}/{name}", "/{name}"):
            # Not in /openapi.json: the repository id is read from either path shape (repo_id),
            # which the schema cannot express; the Hub's own clients are the contract here.
            router.api_route(f"{prefix}{repo}{tail}", methods=list(methods), include_in_schema=False)(func)
        return func

    return register


def iso(moment: datetime) -> str:
    """2024-01-02T03:04:05.000Z: what the Hub sends and huggingface_hub parses."""
    if moment.tzinfo is None:  # SQLite gives back naive datetimes; the registry writes UTC
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
