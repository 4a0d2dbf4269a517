"""Who a UI request acts as, and the CSRF check of every form that changes something.

The principal is resolved as the API resolves it (`authentication.authenticate`), from a token kept in an
HttpOnly, SameSite=Strict cookie instead of the Authorization header: script on a page never reads
it, and a cross-site request never carries it. Every POST also needs a synchronizer token: a random
nonce in its own cookie, and in the form the HMAC of that nonce under the server's secret key
(`app.state.secret_key`, settled once at start-up by `registry.startup`). A forged form
can neither read the cookie nor compute the HMAC; a request whose Origin names another site is
refused before that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import replace
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, Request, Response

from registry.access import tokens
from registry.access.addresses import source_of
from registry.access.principal import Principal
from registry.errors import AuthThrottled, BadRequest, Forbidden, PayloadTooLarge, Unauthenticated
from registry.services.context import Registry
from registry.services.security import SecurityMonitor

TOKEN_COOKIE = "adreg_ui_token"
NONCE_COOKIE = "adreg_ui_csrf"
CSRF_FIELD = "csrf_token"
_CSRF_LABEL = b"adapters-ui-csrf\x00"
"""Domain separation: the secret also signs Hub upload URLs; a CSRF token is never one of those."""


def secret_of(request: Request) -> bytes:
    """The server's secret key, which the app factory read once (registry.startup)."""
    key: bytes = request.app.state.secret_key
    return key


def _source(request: Request) -> str | None:
    return source_of(request.scope, request.app.state.settings)


def _monitor(request: Request) -> SecurityMonitor:
    return request.app.state.security  # type: ignore[no-any-return]


def principal_of(request: Request) -> Principal:
    """The caller: the user of the cookie's token, or anonymous. A token that no longer
    authenticates (revoked, expired) is anonymous here, and the page offers the login form again
    (`request.state.stale_login` tells the layout; `forget_stale_login` drops the cookie, so a
    page that polls does not count as a guesser). A throttled source gets AuthThrottled, and the
    error page it renders shows it anonymous."""
    address = _source(request)
    secret = request.cookies.get(TOKEN_COOKIE)
    request.state.stale_login = False
    anonymous = replace(Principal.anonymous(), address=address)
    if not secret:
        return anonymous
    try:
        principal = _monitor(request).authenticate(request.app.state.registry, address, secret, "cookie")
    except Unauthenticated:
        request.state.stale_login = True
        return anonymous
    except AuthThrottled:
        request.state.principal = anonymous
        raise
    return replace(principal, address=address)


def login(request: Request, registry: Registry, secret: str) -> Principal:
    """Check a token typed into the login form (raises Unauthenticated, naming no secret, and
    AuthThrottled while the source is throttled)."""
    secret = secret.strip()
    address, monitor = _source(request), _monitor(request)
    if not tokens.is_well_formed(secret):
        monitor.check(address)
        monitor.auth_failed(address, "login")
        raise Unauthenticated("that is not a registry token (adreg_...)")
    return monitor.authenticate(registry, address, secret, "login")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_token_cookie(request: Request, response: Response, secret: str) -> None:
    response.set_cookie(
        TOKEN_COOKIE, secret, httponly=True, samesite="strict", secure=_secure(request), path="/ui"
    )


def clear_token_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        TOKEN_COOKIE, httponly=True, samesite="strict", secure=_secure(request), path="/ui"
    )


def forget_stale_login(request: Request, response: Response) -> None:
    """Drop a cookie whose token no longer authenticates (unless the answer sets a new one): it
    counted as one failed authentication, and the jobs page polls every second."""
    if getattr(request.state, "stale_login", False) and not any(
        c.startswith(f"{TOKEN_COOKIE}=") for c in response.headers.getlist("set-cookie")
    ):
        clear_token_cookie(request, response)


def csrf_token(request: Request) -> str:
    """The form token of this browser: the HMAC of its nonce cookie (made on first use and set on
    the response by `remember_nonce`)."""
    nonce = request.cookies.get(NONCE_COOKIE) or getattr(request.state, "new_nonce", None)
    if not nonce:
        nonce = request.state.new_nonce = secrets.token_urlsafe(32)
    return _sign(secret_of(request), nonce)


def rotate_nonce(request: Request) -> None:
    """A fresh nonce (at login and logout): a token seen before the change stops working."""
    request.state.new_nonce = secrets.token_urlsafe(32)


def remember_nonce(request: Request, response: Response) -> None:
    nonce = getattr(request.state, "new_nonce", None)
    if nonce:
        response.set_cookie(
            NONCE_COOKIE, nonce, httponly=True, samesite="strict", secure=_secure(request), path="/ui"
        )


def _sign(key: bytes, nonce: str) -> str:
    return hmac.new(key, _CSRF_LABEL + nonce.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a state-changing form that was not made by one of our pages for this browser.

    Raises:
        Forbidden: another site's Origin, no nonce cookie, or a missing or wrong token.
    """
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}"
        parts = urlsplit(origin)
        if f"{parts.scheme}://{parts.netloc}" != own:
            raise Forbidden("cross-site form refused (Origin does not match)", action="csrf")
    nonce = request.cookies.get(NONCE_COOKIE)
    if not nonce or not submitted:
        raise Forbidden("the form's CSRF token is missing: reload the page and submit again", action="csrf")
    if not hmac.compare_digest(_sign(secret_of(request), nonce), submitted):
        raise Forbidden("the form's CSRF token is wrong: reload the page and submit again", action="csrf")


MAX_FORM_BYTES = 16 * 1024
"""Our forms carry a token and a CSRF token: a bigger body is not one of ours."""


async def checked_form(request: Request) -> dict[str, str]:
    """The fields of a POSTed form (urlencoded, as our pages send it), after the CSRF check: every
    route that changes something takes this dependency, so none can forget the check."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":  # not one of our forms: no CSRF token either
        check_csrf(request, None)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"a form is at most {MAX_FORM_BYTES} bytes")
    try:
        parsed = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=16, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequest("malformed form body") from err
    fields = {k: v[0] for k, v in parsed.items()}
    check_csrf(request, fields.get(CSRF_FIELD))
    return fields


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]


FRAMING_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
"""What every page the server renders carries, the UI's and the API docs' (registry/api/security.py):
never inside another site's frame, never sniffed into another type."""
SECURITY_HEADERS = {
    # No inline script or style: the only script is static/jobs.js, the only style static/ui.css;
    # SVG is drawn with presentation attributes, which CSP does not count as inline style.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    **FRAMING_HEADERS,
    "cache-control": "no-store",
}


def csp(image_hosts: frozenset[str] = frozenset()) -> str:
    """The pages' Content-Security-Policy; images also from the hosts the operator allowed model
    cards to show (ADAPTERS_UI_IMAGE_HOSTS; `*`: any https host)."""
    policy = SECURITY_HEADERS["content-security-policy"]
    if not image_hosts:
        return policy
    extra = "https:" if "*" in image_hosts else " ".join(f"https://{h}" for h in sorted(image_hosts))
    return policy.replace("img-src 'self' data:;", f"img-src 'self' data: {extra};")


def secure_headers(response: Response, image_hosts: frozenset[str] = frozenset()) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["content-security-policy"] = csp(image_hosts)


LOGIN_LINK_TTL_S = 600
"""How long a one-time login link (`adapters ui`) stays usable: the browser opens it at once."""


class LoginLinks:
    """One-time login links for this process's server (`adapters ui`, which runs the server it
    opens): a random nonce stands for a token until it is used once or expires. Only the nonce's
    hash is kept as the key; the link never holds the token itself, so a browser history or a
    log line that shows it is worth nothing once it was used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[str, tuple[str, float]] = {}

    @staticmethod
    def _key(nonce: str) -> str:
        return hashlib.sha256(nonce.encode()).hexdigest()

    def issue(self, secret: str, ttl_s: float = LOGIN_LINK_TTL_S) -> str:
        nonce = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._links = {k: v for k, v in self._links.items() if v[1] > now}
            self._links[self._key(nonce)] = (secret, now + ttl_s)
        return nonce

    def redeem(self, nonce: str) -> str | None:
        """The token a nonce stands for, once; None when unknown, used or expired."""
        with self._lock:
            found = self._links.pop(self._key(nonce), None)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]
