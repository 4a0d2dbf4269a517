"""Templates, the page route class (errors as HTML pages, security headers on every answer) and
the static files."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError
from starlette.types import Scope

from registry.access.principal import Principal
from registry.entities import BaseInfo
from registry.errors import NotFound, RegistryError, Unauthenticated
from registry.refs import ref_or_none
from registry.services.context import Registry
from registry.ui import session

log = logging.getLogger("registry.ui")
HERE = Path(__file__).parent


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def repo_url(repo: str, number: int | None = None) -> str:
    """/ui/r/NS/NAME[/N]: each part percent-encoded (names are validated, but a link never trusts)."""
    ns, _, name = repo.partition("/")
    url = f"/ui/r/{quote(ns, safe='')}/{quote(name, safe='')}"
    return url if number is None else f"{url}/{number}"


def ref_url(ref: str) -> str:
    """The page of the version a reference names (ns/name:N), or of its repository."""
    parsed = ref_or_none(ref)
    if parsed is None:
        return "/ui"
    return repo_url(str(parsed.repo), parsed.version)


def base_url(ref: str, **params: str | None) -> str:
    query = {"ref": ref, **{k: v for k, v in params.items() if v}}
    return "/ui/base?" + urlencode(query)


def base_key(base: BaseInfo) -> str:
    """What names a base in a link: its fingerprint, else its first name (a structure-only base)."""
    return base.fingerprint or (base.names[0].name if base.names else f"#{base.id}")


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is escaped, in .html and .svg alike: names are user input
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["bytes"] = human_bytes
ENV.filters["repo_url"] = repo_url
ENV.filters["ref_url"] = ref_url
ENV.globals["base_url"] = base_url
ENV.globals["base_key"] = base_key


def image_hosts(request: Request) -> frozenset[str]:
    """The hosts a model card may load images from (ADAPTERS_UI_IMAGE_HOSTS)."""
    hosts: str = request.app.state.settings.ui_image_hosts
    return frozenset(h for h in hosts.split(",") if h)


def registry_dep(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]


def principal_dep(request: Request) -> Principal:
    principal = session.principal_of(request)
    request.state.principal = principal
    return principal


UiPrincipal = Annotated[Principal, Depends(principal_dep)]
RegistryDep = Annotated[Registry, Depends(registry_dep)]


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render `template` inside the layout: who is logged in, the CSRF token for its forms."""
    principal = getattr(request.state, "principal", None) or principal_dep(request)
    html = ENV.get_template(template).render(
        request_path=request.url.path,
        me=principal,
        stale_login=getattr(request.state, "stale_login", False),
        csrf_field=session.CSRF_FIELD,
        csrf=session.csrf_token(request),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, err: RegistryError) -> HTMLResponse:
    if err.status >= 500:
        log.warning("ui request %s: %s", request.url.path, err)
    title = "Not found" if isinstance(err, NotFound) else err.code.replace("_", " ").capitalize()
    response = page(
        request,
        "error.html",
        status=err.status,
        title=title,
        message=str(err),
        needs_login=isinstance(err, Unauthenticated),
    )
    if "Retry-After" in err.headers:  # a throttled source (429 auth_throttled)
        response.headers["Retry-After"] = err.headers["Retry-After"]
    return response


class PageRoute(APIRoute):
    """A UI route: a RegistryError (or bad query parameters) becomes an HTML error page with the
    API's status (a private repository is a 404, as in the API), and every answer carries the
    security headers and the CSRF nonce cookie when one was made."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except RegistryError as err:
                response = error_page(request, err)
            except (RequestValidationError, ValidationError) as err:
                from registry.errors import BadRequest

                detail = "; ".join(str(e.get("msg")) for e in err.errors()[:3])
                response = error_page(request, BadRequest(f"invalid input: {detail}"))
            session.secure_headers(response, image_hosts(request))
            session.remember_nonce(request, response)
            session.forget_stale_login(request, response)
            return response

        return run


class StaticAssets(StaticFiles):
    """The CSS and the jobs script, with the same headers as the pages."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        session.secure_headers(response)
        response.headers["cache-control"] = "no-cache"
        return response


def static_files() -> StaticAssets:
    return StaticAssets(directory=HERE / "static")
