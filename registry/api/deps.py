"""Typed dependencies: the registry wiring and the principal every request passes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request

from registry.bounds import LABEL_LEN, check_text
from registry.config import Settings
from registry.errors import BadRequest, ValidationFailed
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
    """The caller named by X-Adapters-User: percent-encoded UTF-8 (what HttpClient sends), or a plain
    value from an older client. A name the registry cannot store (over LABEL_LEN characters,
    control or bidi characters) is a 400, not a truncated or silently cleaned name."""
    raw = request.headers.get("x-adapters-user", "").strip()
    try:  # the header's bytes arrive as latin-1; a raw UTF-8 name (curl -H) reads back as itself
        raw = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    try:
        name = unquote(raw, errors="strict")
    except UnicodeDecodeError:  # %-escapes that are not UTF-8: keep what was sent
        name = raw
    try:
        check_text(name, "X-Adapters-User", LABEL_LEN)  # before strip(): an encoded newline is refused
    except ValidationFailed as err:
        raise BadRequest(f"invalid user header: {err}", field="X-Adapters-User") from err
    name = name.strip()
    if not name:
        return Principal("anonymous")
    return Principal(name)


RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
