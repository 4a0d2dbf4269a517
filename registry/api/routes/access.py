"""Users, grants, tokens and namespace visibility (`adapters user|grant|token|namespace`), and who
the caller is (`adapters whoami`; `adapters login` checks a token with it).

Thin: each route calls one function of registry.services.accounts with the request's principal; every
permission check is there. A new token's secret is in the answer to its creation only
(`Cache-Control: no-store`), never logged, never stored but as its hash."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from registry.access import authentication
from registry.access.entities import GrantInfo, NamespaceInfo, TokenInfo, UserInfo, WhoAmI
from registry.access.principal import Role
from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep
from registry.bounds import INT32_MAX, LABEL_LEN
from registry.errors import BadRequest, Unauthenticated
from registry.services import accounts

router = APIRouter(prefix="/v1", tags=["access"], route_class=ApiRoute)
TokenId = Annotated[int, Path(ge=1, le=INT32_MAX)]
MAX_TOKEN_LIFETIME_S = 100 * 365 * 86400
MAX_TOKEN_NAMESPACES = 256


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=accounts.USER_NAME_LEN)
    admin: bool = False
    """A global admin: every right in every namespace."""


class GrantRole(BaseModel):
    role: Role


class NewToken(BaseModel):
    user: str | None = Field(default=None, max_length=accounts.USER_NAME_LEN)
    """Whose token (default: the caller's own user)."""
    read_only: bool = False
    namespaces: list[str] | None = Field(default=None, max_length=MAX_TOKEN_NAMESPACES)
    """Only these namespaces (default: every one the user reaches)."""
    expires_in_s: int | None = Field(default=None, ge=1, le=MAX_TOKEN_LIFETIME_S)
    """Lifetime in seconds (default: no expiry)."""
    name: str | None = Field(default=None, max_length=LABEL_LEN)
    """A label to recognise the token by."""


class CreatedToken(TokenInfo):
    token: str
    """The secret, shown this once."""


class Visibility(BaseModel):
    public: bool


@router.get("/whoami")
def whoami(principal: PrincipalDep) -> WhoAmI:
    """The token's user, their grants, and how the token narrows them. 401 without a token."""
    if principal.is_anonymous:
        raise Unauthenticated("whoami needs a token")
    return authentication.whoami(principal)


@router.post("/users", status_code=201)
def add_user(body: NewUser, reg: RegistryDep, principal: PrincipalDep) -> UserInfo:
    """Add a user (global admins). 409 when the name is taken."""
    return accounts.add_user(reg, body.name, body.admin, principal=principal)


@router.get("/users")
def list_users(reg: RegistryDep, principal: PrincipalDep) -> list[UserInfo]:
    """Every user and their grants (global admins)."""
    return accounts.list_users(reg, principal=principal)


@router.put("/grants/{user}/{namespace}")
def set_grant(
    user: str, namespace: str, body: GrantRole, reg: RegistryDep, principal: PrincipalDep
) -> GrantInfo:
    """Give USER ROLE in NAMESPACE, replacing their role there (admins of NAMESPACE)."""
    return accounts.grant(reg, user, namespace, body.role, principal=principal)


@router.delete("/grants/{user}/{namespace}")
def remove_grant(user: str, namespace: str, reg: RegistryDep, principal: PrincipalDep) -> GrantInfo:
    """Remove USER's role in NAMESPACE (admins of NAMESPACE); `role` is null in the answer."""
    return accounts.grant(reg, user, namespace, None, principal=principal)


@router.post("/tokens", status_code=201)
def create_token(
    body: NewToken, reg: RegistryDep, principal: PrincipalDep, response: Response
) -> CreatedToken:
    """A new token: for the caller's own user (never reaching beyond the token used), or for any
    user by a global admin. The secret is in this answer only."""
    user = body.user
    if user is None:
        if principal.is_anonymous:
            raise Unauthenticated("creating a token needs a token")
        if principal.user_id is None:
            raise BadRequest("give the token's user", field="user")
        user = principal.name
    secret, info = accounts.create_token(
        reg,
        user,
        read_only=body.read_only,
        namespaces=body.namespaces,
        expires_in=timedelta(seconds=body.expires_in_s) if body.expires_in_s is not None else None,
        name=body.name,
        principal=principal,
    )
    response.headers["Cache-Control"] = "no-store"
    return CreatedToken(token=secret, **info.model_dump())


@router.get("/tokens")
def list_tokens(reg: RegistryDep, principal: PrincipalDep, user: str | None = None) -> list[TokenInfo]:
    """Tokens, newest first, without their secrets: the caller's own, or USER's (global admins)."""
    return accounts.list_tokens(reg, user, principal=principal)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: TokenId, reg: RegistryDep, principal: PrincipalDep) -> TokenInfo:
    """Revoke a token at once (its user or a global admin); idempotent."""
    return accounts.revoke_token(reg, token_id, principal=principal)


@router.put("/namespaces/{namespace}")
def set_namespace(
    namespace: str, body: Visibility, reg: RegistryDep, principal: PrincipalDep
) -> NamespaceInfo:
    """Make NAMESPACE public (anyone reads it, anonymous callers too) or private (admins of it)."""
    return accounts.set_namespace_visibility(reg, namespace, body.public, principal=principal)


@router.get("/namespaces")
def list_namespaces(reg: RegistryDep, principal: PrincipalDep) -> list[NamespaceInfo]:
    """Namespaces with a visibility set that the caller may read (any other one is private)."""
    return accounts.list_namespaces(reg, principal=principal)
