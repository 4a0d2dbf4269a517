"""Base models and the fit query."""

from __future__ import annotations

from fastapi import APIRouter

from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.entities import BaseInfo, BaseLayout, BaseRegistration, FitQuery, FitResult
from registry.services import bases
from registry.services.fit_query import fit as find_fits

router = APIRouter(prefix="/v1", tags=["bases"], route_class=ApiRoute)


@router.post("/bases", status_code=201)
def register_base(body: BaseRegistration, reg: RegistryDep, principal: PrincipalDep) -> BaseInfo:
    """Register a base from its fingerprint, structure and module table (computed by the client)."""
    return bases.register_base(reg, body, principal=principal)


@router.get("/bases")
def list_bases(reg: RegistryDep, principal: PrincipalDep) -> list[BaseInfo]:
    return bases.list_bases(reg, principal=principal)


@router.get("/bases/lookup")
def get_base(ref: str, reg: RegistryDep, principal: PrincipalDep) -> BaseInfo:
    """A base by name (names may contain '/') or by fingerprint sha256:..."""
    return bases.get_base(reg, ref, principal=principal)


@router.get("/bases/layout")
def get_base_layout(ref: str, reg: RegistryDep, principal: PrincipalDep) -> BaseLayout:
    """A base with its config.json and module table (what `adapters plan` computes from)."""
    return bases.get_base_layout(reg, ref, principal=principal)


@router.post("/fit")
def fit_query(body: FitQuery, reg: RegistryDep, principal: PrincipalDep) -> FitResult:
    """Which adapters fit this base: tiers exact / compatible, filters, sort by an eval metric."""
    return find_fits(reg, body, principal=principal)
