"""Move and delete aliases."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.bounds import INT32_MAX
from registry.entities import AliasInfo
from registry.errors import BadRequest
from registry.refs import Ref, parse_ref, parse_repo
from registry.services import aliases

router = APIRouter(prefix="/v1/repos/{namespace}/{name}/aliases", tags=["aliases"], route_class=ApiRoute)


class AliasTarget(BaseModel):
    ref: str | None = Field(default=None, max_length=300)
    """A reference inside this repository (ns/name:3, ns/name@staging, ...)."""
    version: int | None = Field(default=None, ge=1, le=INT32_MAX)


@router.put("/{alias}")
def set_alias(
    namespace: str, name: str, alias: str, body: AliasTarget, reg: RegistryDep, principal: PrincipalDep
) -> AliasInfo:
    repo = parse_repo(f"{namespace}/{name}")
    if body.version is not None:
        ref = Ref(repo, version=body.version)
    elif body.ref is not None:
        ref = parse_ref(body.ref)
        if ref.repo != repo:
            raise BadRequest(f"{body.ref} is not in {repo}")
    else:
        raise BadRequest("give ref or version")
    return aliases.set_alias(reg, ref, alias, principal=principal)


@router.delete("/{alias}")
def delete_alias(
    namespace: str, name: str, alias: str, reg: RegistryDep, principal: PrincipalDep
) -> AliasInfo:
    return aliases.delete_alias(reg, parse_repo(f"{namespace}/{name}"), alias, principal=principal)
