"""Who the caller is (`adapters whoami`, `adapters login` checks a token with it)."""

from __future__ import annotations

from fastapi import APIRouter

from registry.access.accounts import whoami as describe
from registry.access.entities import WhoAmI
from registry.api.deps import PrincipalDep
from registry.errors import Unauthenticated

router = APIRouter(prefix="/v1", tags=["access"])


@router.get("/whoami")
def whoami(principal: PrincipalDep) -> WhoAmI:
    """The token's user, their grants, and how the token narrows them. 401 without a token."""
    if principal.is_anonymous:
        raise Unauthenticated("whoami needs a token")
    return describe(principal)
