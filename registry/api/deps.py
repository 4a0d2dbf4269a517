"""Typed dependencies: the registry wiring and the principal every request passes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from registry.config import Settings
from registry.services.context import Registry


@dataclass(frozen=True)
class Principal:
    """Who is calling. Today: the X-Adapters-User header, unauthenticated.

    Authentication plugs in here (tokens, mTLS, OIDC) without touching a route.
    """

    name: str


def get_registry(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_principal(request: Request) -> Principal:
    name = request.headers.get("x-adapters-user", "").strip()[:128]
    return Principal(name or "anonymous")


RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
