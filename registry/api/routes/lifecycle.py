"""Deleting versions and repositories, garbage collection of the blob store, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.bounds import INT32_MAX
from registry.entities import AuditEventInfo, AuditFilter, DeleteResult, FsckReport, GcReport, Page
from registry.refs import Ref, parse_repo
from registry.services import audit, fsck, gc, lifecycle

router = APIRouter(prefix="/v1", tags=["lifecycle"], route_class=ApiRoute)


@router.delete("/repos/{namespace}/{name}/versions/{number}")
def delete_version(
    namespace: str,
    name: str,
    number: Annotated[int, Path(ge=1, le=INT32_MAX)],
    reg: RegistryDep,
    principal: PrincipalDep,
    force: bool = False,
) -> DeleteResult:
    """Delete a version; 409 `alias_in_use` while an alias points at it, unless `force`."""
    ref = Ref(parse_repo(f"{namespace}/{name}"), version=number)
    return lifecycle.delete_version(reg, ref, force, principal=principal)


@router.delete("/repos/{namespace}/{name}")
def delete_repository(namespace: str, name: str, reg: RegistryDep, principal: PrincipalDep) -> DeleteResult:
    """Delete every version and alias of a repository (its numbers are never given again)."""
    return lifecycle.delete_repository(reg, parse_repo(f"{namespace}/{name}"), principal=principal)


class GcRequest(BaseModel):
    dry_run: bool = False
    grace_s: float = Field(default=gc.DEFAULT_GRACE_S, ge=0, le=10 * 365 * 86400)


@router.post("/gc")
def collect_garbage(body: GcRequest, reg: RegistryDep, principal: PrincipalDep) -> GcReport:
    """Mark and sweep the blob store (global admins only)."""
    return gc.collect_garbage(reg, dry_run=body.dry_run, grace_s=body.grace_s, principal=principal)


@router.get("/fsck")
def check_store(reg: RegistryDep, principal: PrincipalDep, verify: bool = False) -> FsckReport:
    """The database against the blob store: listed blobs missing (or of another size; with
    `verify`, other bytes) and stored blobs nothing lists (global admins only). Changes nothing."""
    return fsck.check_store(reg, verify=verify, principal=principal)


@router.get("/audit")
def list_audit(
    reg: RegistryDep,
    principal: PrincipalDep,
    repo: Annotated[str | None, Query(max_length=129)] = None,
    user: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> Page[AuditEventInfo]:
    """Changes, newest first: all for a global admin, a namespace admin's namespaces otherwise."""
    flt = AuditFilter(repo=repo, user=user, since=since)
    return audit.list_events(reg, flt, limit, cursor, principal=principal)
