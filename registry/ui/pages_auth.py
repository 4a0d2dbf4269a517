"""Log in with a registry token (kept in an HttpOnly, SameSite=Strict cookie) and log out."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from registry.errors import Unauthenticated
from registry.ui import session
from registry.ui.render import PageRoute, RegistryDep, UiPrincipal, page

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


def _local(target: str | None) -> str:
    """Where to go after logging in: a path of this UI only (never another site)."""
    if not target:
        return "/ui"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui") or "\\" in target:
        return "/ui"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, principal: UiPrincipal, next: Annotated[str | None, Query(max_length=2048)] = None
) -> HTMLResponse:
    return page(request, "login.html", next=_local(next), error=None)


@router.post("/login")
def login(request: Request, form: session.CheckedForm, reg: RegistryDep, principal: UiPrincipal) -> Response:
    """Check the token, keep it in the cookie, and start a fresh CSRF nonce."""
    target = _local(form.get("next"))
    try:
        session.login(request, reg, form.get("token", ""))
    except Unauthenticated as err:
        return page(request, "login.html", status=401, next=target, error=str(err))
    response = RedirectResponse(target, status_code=303)
    session.set_token_cookie(request, response, form["token"].strip())
    session.rotate_nonce(request)
    return response


@router.get("/login/once")
def login_once(
    request: Request,
    reg: RegistryDep,
    principal: UiPrincipal,
    n: Annotated[str, Query(min_length=16, max_length=128)],
) -> Response:
    """A one-time login link (`adapters ui`): its token goes into the cookie, the link is spent.
    A link used twice, expired or unknown shows the login form."""
    links: session.LoginLinks = request.app.state.login_links
    secret = links.redeem(n)
    error = "this login link was used already or has expired: log in with a token"
    if secret is not None:
        try:
            session.login(request, reg, secret)
        except Unauthenticated as err:
            error = str(err)
        else:
            response = RedirectResponse("/ui", status_code=303)
            session.set_token_cookie(request, response, secret)
            session.rotate_nonce(request)
            return response
    return page(request, "login.html", status=401, next="/ui", error=error)


@router.post("/logout")
def logout(request: Request, form: session.CheckedForm) -> Response:
    response = RedirectResponse("/ui", status_code=303)
    session.clear_token_cookie(request, response)
    session.rotate_nonce(request)
    return response
