"""Issue 21's low findings on who is calling, over real HTTP against a real uvicorn: the audit address
believes X-Forwarded-For only from listed proxies; failed authentications and denied writes are
recorded (one row per source and window) and a guesser is throttled; the API docs cannot be framed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.config import Settings
from registry.services import accounts
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings

pytestmark = pytest.mark.server

PROBLEM = "application/problem+json"
FORWARDED = {"X-Forwarded-For": "203.0.113.7"}
WRONG = "adreg_" + "x" * 43
"""A well-formed token that no one holds."""


@pytest.fixture
def base(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(tmp_path, db_url_for("sqlite", tmp_path, request), "file", request)


@pytest.fixture
def reg(base: Settings) -> Iterator[Registry]:
    registry = Registry.from_settings(base, migrate=True)
    yield registry
    registry.close()


def serve(settings: Settings, reg: Registry, **options: object) -> ServerThread:
    return ServerThread(create_app(settings, reg), **options)


def with_proxies(settings: Settings, proxies: str) -> Settings:
    return Settings(**{**settings.model_dump(), "trusted_proxies": proxies})


def added_user_address(srv: ServerThread, name: str, headers: dict[str, str]) -> str:
    """Add a user over HTTP with `headers`; the address its audit event recorded."""
    with httpx.Client(base_url=srv.url, headers=srv.auth, timeout=30) as http:
        assert http.post("/v1/users", json={"name": name}, headers=headers).status_code == 201
        events = http.get("/v1/audit", params={"limit": 500}).json()["items"]
    return str(
        next(e["address"] for e in events if e["action"] == "user.add" and e["target"] == f"user:{name}")
    )


# ---------------------------------------------------------------- the audit address
def test_forwarded_for_is_not_believed_by_default(base: Settings, reg: Registry) -> None:
    """uvicorn believes X-Forwarded-For from any loopback peer by default: the registry does not."""
    assert base.trusted_proxies == ""
    with serve(base, reg) as srv:
        assert added_user_address(srv, "ulla", FORWARDED) == "127.0.0.1"


def test_forwarded_for_is_believed_from_a_listed_proxy(base: Settings, reg: Registry) -> None:
    settings = with_proxies(base, "127.0.0.1, 198.51.100.0/24")
    with serve(settings, reg) as srv:
        assert added_user_address(srv, "ulla", FORWARDED) == "203.0.113.7"
        # A chain: the last hop that is not a listed proxy is the caller; one it made up is not.
        chain = {"X-Forwarded-For": "192.0.2.66, 203.0.113.7, 198.51.100.9"}
        assert added_user_address(srv, "vera", chain) == "203.0.113.7"


def test_the_registry_decides_under_any_asgi_server(base: Settings, reg: Registry) -> None:
    """The address is computed by the app from the peer its server reports: a server that reads
    no proxy headers still gets the listed proxy's X-Forwarded-For, and one that believes loopback
    on its own (uvicorn's defaults) never gets the forwarded address recorded."""
    listed = with_proxies(base, "127.0.0.1")
    with serve(listed, reg, proxy_headers=False) as srv:
        assert added_user_address(srv, "ulla", FORWARDED) == "203.0.113.7"
    with serve(base, reg, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as srv:
        assert added_user_address(srv, "vera", FORWARDED) == "unknown"
        assert added_user_address(srv, "wanda", {}) == "127.0.0.1"


def test_bad_proxy_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.internal")
    assert Settings(trusted_proxies=" 10.1.2.3/8 ,::1").trusted_proxies == "10.0.0.0/8,::1/128"


# ---------------------------------------------------------------- failed authentications
def security_events(settings: Settings, reg: Registry) -> list[dict[str, Any]]:
    """The audit log's security rows, read over HTTP from a fresh server (the one under test has
    stopped, and written the counts of its last window as it stopped)."""
    with serve(settings, reg) as srv, httpx.Client(base_url=srv.url, headers=srv.auth, timeout=30) as http:
        items = http.get("/v1/audit", params={"limit": 500}).json()["items"]
    return [e for e in items if str(e["action"]).startswith("security.")]


@pytest.fixture
def strict(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Settings:
    """Three failures within a minute throttle a source, on SQLite and PostgreSQL."""
    settings = make_settings(tmp_path, db_url, "file", request)
    return Settings(**{**settings.model_dump(), "auth_failure_limit": 3, "auth_failure_window_s": 60})


def test_a_token_guesser_is_throttled_and_recorded(strict: Settings) -> None:
    reg = Registry.from_settings(strict, migrate=True)
    try:
        with serve(strict, reg) as srv:
            guesses = [WRONG, "adreg_" + "y" * 43, "not-even-a-token"]
            with httpx.Client(base_url=srv.url, timeout=30) as http:
                for guess in guesses:  # /v1 and the Hub routes share the count
                    path = "/v1/repos" if guess != WRONG else "/api/whoami-v2"
                    assert http.get(path, headers={"Authorization": f"Bearer {guess}"}).status_code == 401
                refused = http.get("/v1/repos", headers={"Authorization": f"Bearer {WRONG}"})
                assert refused.status_code == 429 and refused.headers["content-type"].startswith(PROBLEM)
                assert refused.json()["code"] == "auth_throttled"
                assert 0 < int(refused.headers["retry-after"]) <= 60
                # Every guess from this source is refused so now, on /v1 or the Hub...
                hub = http.get("/api/whoami-v2", headers={"Authorization": f"Bearer {WRONG}"})
                assert hub.status_code == 429 and int(hub.headers["retry-after"]) > 0
                # ...but a valid token from the same address (a NAT, a proxy) still works, and a
                # caller that presents no credential is not refused.
                assert http.get("/v1/repos", headers=srv.auth).status_code == 200
                assert http.get("/api/whoami-v2", headers=srv.auth).status_code == 200
                assert http.get("/v1/repos").status_code == 200
            # Another source (127.0.0.2 reaches the loopback server too) is not affected.
            other = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(base_url=srv.url, headers=srv.auth, timeout=30, transport=other) as http:
                assert http.get("/v1/repos").status_code == 200
                assert http.get("/api/whoami-v2").status_code == 200
        events = security_events(strict, reg)
    finally:
        reg.close()
    failed = [e for e in events if e["action"] == "security.auth_failed"]
    assert len(failed) == 1, failed  # one row for the source and window, not one per guess
    row = failed[0]
    assert (row["address"], row["actor"], row["target"]) == ("127.0.0.1", "anonymous", "127.0.0.1")
    assert row["details"]["count"] == 3 and row["details"]["via"] == {"bearer": 3}
    assert row["details"]["throttled"] == 2
    stored = json.dumps(events)
    assert not any(g in stored for g in guesses) and "adreg_" not in stored


def test_denied_writes_are_recorded_per_source_and_principal(base: Settings, reg: Registry) -> None:
    accounts.add_user(reg, "mallory", principal=OPERATOR)
    token, _ = accounts.create_token(reg, "mallory", principal=OPERATOR)
    with serve(base, reg) as srv:
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            for name in ("eve", "trent"):  # only global admins add users
                assert http.post("/v1/users", json={"name": name}).status_code == 403
            assert http.get("/v1/repos").status_code == 200  # reads are no events
        with httpx.Client(base_url=srv.url, timeout=30) as http:  # a UI form without its CSRF token
            assert http.post("/ui/logout", data={}).status_code == 403
    denied = {e["actor"]: e for e in security_events(base, reg) if e["action"] == "security.write_denied"}
    assert set(denied) == {"mallory", "anonymous"}
    mallory = denied["mallory"]
    assert mallory["address"] == "127.0.0.1" and mallory["user_id"] is not None
    assert mallory["details"]["count"] == 2 and mallory["details"]["status"] == {"403": 2}
    assert mallory["details"]["paths"] == ["/v1/users"]
    assert denied["anonymous"]["details"]["paths"] == ["/ui/logout"]
    assert token not in json.dumps(list(denied.values()))


def test_ui_logins_count_and_are_throttled(base: Settings, reg: Registry) -> None:
    settings = Settings(**{**base.model_dump(), "auth_failure_limit": 2})
    with serve(settings, reg) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        form = http.get("/ui/login").text
        match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form)
        assert match is not None
        login = {"csrf_token": match.group(1), "next": "/ui"}
        for typed in ("hunter2", WRONG):
            assert http.post("/ui/login", data={**login, "token": typed}).status_code == 401
        page = http.post("/ui/login", data={**login, "token": "hunter3"})
        assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")
        assert int(page.headers["retry-after"]) > 0
        assert page.headers["x-frame-options"] == "DENY"
        assert "adreg_ui_token" not in page.headers.get("set-cookie", "")
        # A cookie that does not authenticate is refused so too...
        http.cookies.set("adreg_ui_token", WRONG)
        assert http.get("/ui").status_code == 429
        # ...while the valid token still logs in from this address (a NAT is not one guesser).
        http.cookies.delete("adreg_ui_token")
        assert http.post("/ui/login", data={**login, "token": srv.token}).status_code == 303
    events = security_events(base, reg)
    failed = [e for e in events if e["action"] == "security.auth_failed"]
    assert len(failed) == 1 and failed[0]["details"]["via"] == {"login": 2}
    assert "hunter2" not in json.dumps(events) and "hunter3" not in json.dumps(events)


def test_a_stale_ui_cookie_counts_once(base: Settings, reg: Registry) -> None:
    """A page that polls with a revoked token's cookie is not a guesser: the cookie is dropped."""
    settings = Settings(**{**base.model_dump(), "auth_failure_limit": 2})
    accounts.add_user(reg, "sam", principal=OPERATOR)
    token, info = accounts.create_token(reg, "sam", principal=OPERATOR)
    accounts.revoke_token(reg, info.id, principal=OPERATOR)
    with serve(settings, reg) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        http.cookies.set("adreg_ui_token", token, domain="127.0.0.1", path="/ui")  # as a login set it
        first = http.get("/ui")
        assert first.status_code == 200 and "adreg_ui_token=" in first.headers["set-cookie"]
        assert "adreg_ui_token" not in http.cookies
        for _ in range(3):
            assert http.get("/ui").status_code == 200


# ---------------------------------------------------------------- the docs pages
@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_the_api_docs_cannot_be_framed(base: Settings, reg: Registry, path: str) -> None:
    with serve(base, reg) as srv:
        resp = httpx.get(srv.url + path, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
