"""Signatures attached to versions and namespace signing policies (issue 27): thin, each route
calls one function of registry.services.signatures with the request's principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.bounds import INT32_MAX
from registry.entities import NamespacePolicy, PolicyChange, SignatureInfo, SignRequest
from registry.refs import Ref, parse_repo
from registry.services import signatures

router = APIRouter(prefix="/v1", tags=["signatures"], route_class=ApiRoute)


@router.post("/repos/{namespace}/{name}/versions/{number}/signatures", status_code=201)
def sign_version(
    namespace: str,
    name: str,
    number: Annotated[int, Path(ge=1, le=INT32_MAX)],
    body: SignRequest,
    reg: RegistryDep,
    principal: PrincipalDep,
) -> SignatureInfo:
    """Attach a model-signing bundle over the version's files (writers of the namespace); the
    version's files and digest are unchanged."""
    ref = Ref(parse_repo(f"{namespace}/{name}"), version=number)
    return signatures.sign_version(reg, ref, body, principal=principal)


@router.get("/namespaces/{namespace}/policy")
def get_policy(namespace: str, reg: RegistryDep, principal: PrincipalDep) -> NamespacePolicy:
    """The namespace's signing policy: trusted keys (revoked ones with their date), what must be signed."""
    return signatures.get_policy(reg, namespace, principal=principal)


@router.put("/namespaces/{namespace}/policy")
def set_policy(
    namespace: str, body: PolicyChange, reg: RegistryDep, principal: PrincipalDep
) -> NamespacePolicy:
    """Change the namespace's signing policy (admins of the namespace); audited."""
    return signatures.set_policy(reg, namespace, body, principal=principal)
