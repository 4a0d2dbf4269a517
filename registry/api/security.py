"""The server's side of `registry.services.security` (writes refused with 403 counted as security
events, the counts written to the audit log while the server runs), and the framing headers of the
API's own pages (/docs, /redoc, /openapi.json)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from functools import partial

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.access.addresses import source_of
from registry.access.principal import Principal
from registry.api.background import every
from registry.config import Settings
from registry.services.context import Registry
from registry.services.security import SecurityMonitor
from registry.ui.session import FRAMING_HEADERS

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FLUSH_TICK_S = 10.0
"""How often the counts whose window ended are written: a row lands at most this long after it."""
DOCS_HEADERS = {"content-security-policy": "frame-ancestors 'none'", **FRAMING_HEADERS}
"""The UI's framing headers. Not its whole CSP: Swagger UI and ReDoc load their script from a CDN
and start it inline, which the UI's `default-src 'none'` would block; `frame-ancestors` is the part
that keeps the pages out of another site's frames."""


def install(app: FastAPI, monitor: SecurityMonitor, settings: Settings) -> None:
    """Count denied writes and give the docs pages their headers (call before RequestGuard, which
    stays outermost)."""
    app.state.security = monitor
    pages = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    app.add_middleware(DocsHeaders, paths=frozenset(p for p in pages if p))
    app.add_middleware(DeniedWrites, monitor=monitor, settings=settings)


def flushing(reg: Registry, monitor: SecurityMonitor) -> AbstractAsyncContextManager[None]:
    """While the server runs, write the counts whose window ended; when it stops, the rest."""
    return every(
        min(monitor.window_s, FLUSH_TICK_S),
        partial(monitor.flush, reg),
        partial(monitor.flush, reg, everything=True),
    )


class DeniedWrites:
    """A write (POST, PUT, PATCH, DELETE) answered 403, on any surface (/v1, the Hub protocol, the
    UI's forms), counted as `security.write_denied` for its source and principal. Pure ASGI: it
    only reads the status of the answer, never a body."""

    def __init__(self, app: ASGIApp, monitor: SecurityMonitor, settings: Settings) -> None:
        self.app = app
        self.monitor = monitor
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in WRITES:
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status == 403:
            principal = scope.get("state", {}).get("principal")
            if not isinstance(principal, Principal):
                principal = None
            source = source_of(scope, self.settings)
            self.monitor.write_denied(source, principal, status, str(scope.get("path", "")))


class DocsHeaders:
    """The framing headers on the OpenAPI pages FastAPI serves itself."""

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DOCS_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
