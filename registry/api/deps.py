"""Typed dependencies: the registry wiring and the principal every request passes through."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request

from registry.access import tokens
from registry.access.addresses import source_of
from registry.access.principal import Principal
from registry.bounds import LABEL_LEN, check_text
from registry.config import Settings
from registry.errors import BadRequest, Unauthenticated, ValidationFailed
from registry.services.context import Registry
from registry.services.security import SecurityMonitor


def get_registry(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_principal(request: Request) -> Principal:
    """The caller: the user of the bearer token in `Authorization` (what HttpClient and the Hugging
    Face clients send), or an anonymous caller when there is none. A server always authenticates;
    only in-process callers (embedded mode, the operator) act as `Principal.operator`.

    A credential that is present but wrong (not a bearer token, unknown, expired, revoked) is a 401
    even where an anonymous caller could read: the caller meant to be someone. The secret is never
    logged or echoed.

    A source that failed too many authentications lately is answered 429 (`auth_throttled`) for
    each credential that does not authenticate (a valid one still works); every failure is
    counted (`registry.services.security`).
    The address is the peer's, or a trusted proxy's X-Forwarded-For (`registry.access.addresses`).

    X-Adapters-User is still read and checked (a malformed one is a 400) but never trusted: on a
    server the name comes from the token. It is a display hint of embedded and operator modes only.
    """
    display_hint(request)
    address = source_of(request.scope, get_settings(request))
    credential = tokens.parse_bearer(request.headers.get("authorization"))
    monitor: SecurityMonitor = request.app.state.security
    if credential is None:
        principal = replace(Principal.anonymous(), address=address)
    elif not credential:
        monitor.check(address)
        monitor.auth_failed(address, "bearer")
        raise Unauthenticated("Authorization must be 'Bearer <token>'")
    else:
        found = monitor.authenticate(get_registry(request), address, credential, "bearer")
        principal = replace(found, address=address)
    request.state.principal = principal  # who a refused write is counted against
    return principal


def display_hint(request: Request) -> str | None:
    """The name in X-Adapters-User: percent-encoded UTF-8 (what HttpClient sends), or a plain
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
    return name.strip() or None


RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
