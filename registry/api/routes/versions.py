"""Version commit, lookup by any reference, listing and search."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.bounds import INT32_MAX
from registry.entities import (
    Page,
    PushRequest,
    PushResult,
    RepoInfo,
    VersionFilter,
    VersionInfo,
    VersionSummary,
)
from registry.refs import Ref, parse_ref, parse_repo
from registry.services import queries, versions

router = APIRouter(prefix="/v1", tags=["versions"], route_class=ApiRoute)


@router.post("/repos/{namespace}/{name}/versions", status_code=201)
async def commit_version(
    namespace: str,
    name: str,
    body: PushRequest,
    reg: RegistryDep,
    principal: PrincipalDep,
    response: Response,
) -> PushResult:
    """Record a version from uploaded blobs. 201 when created, 200 when identical to the latest."""
    result = await run_in_threadpool(
        partial(versions.commit_version, principal=principal),
        reg,
        f"{namespace}/{name}",
        body,
        principal.name,
    )
    if not result.created:
        response.status_code = 200
    return result


@router.get("/resolve")
def resolve(ref: str, reg: RegistryDep, principal: PrincipalDep) -> VersionInfo:
    """Look a version up by ns/name, ns/name:N, ns/name@alias or ns/name@sha256:..."""
    return versions.resolve(reg, parse_ref(ref), principal=principal)


@router.get("/repos/{namespace}/{name}/versions/{number}")
def get_version(
    namespace: str,
    name: str,
    number: Annotated[int, Path(ge=1, le=INT32_MAX)],
    reg: RegistryDep,
    principal: PrincipalDep,
) -> VersionInfo:
    return versions.resolve(reg, Ref(parse_repo(f"{namespace}/{name}"), version=number), principal=principal)


@router.get("/versions")
def list_versions(
    reg: RegistryDep,
    principal: PrincipalDep,
    repo: str | None = None,
    task: str | None = None,
    peft_type: str | None = None,
    base: str | None = None,
    latest_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
    cursor: str | None = None,
) -> Page[VersionSummary]:
    flt = VersionFilter(repo=repo, task=task, peft_type=peft_type, base=base, latest_only=latest_only)
    return queries.list_versions(reg, flt, limit, cursor, principal=principal)


@router.get("/repos")
def list_repos(
    reg: RegistryDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
    cursor: str | None = None,
) -> Page[RepoInfo]:
    return queries.list_repos(reg, limit, cursor, principal=principal)
