"""`adapters ui`: open the web UI (issue 13): a server on the embedded default, or the /ui of the
server ADAPTERS_URL names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.app import App, pass_app
from cli.output import emit, emit_json, json_option, say
from registry.access import tokens
from storage.atomic import write_atomic

if TYPE_CHECKING:
    from registry.services.context import Registry

LOGIN_TTL_H = 12
"""The UI token `adapters ui` makes for the local user lives this long: a browser session, not a key."""
REUSE_MIN_LEFT = timedelta(hours=1)
"""A token `adapters ui` made before is used again while it has at least this long to live."""
LOGIN_FILE = "ui-login.json"
"""In $ADAPTERS_HOME (mode 0600, beside the database and the secret key): the token `adapters ui`
made, so the next launch reuses it instead of minting another."""


def _open_when_up(host: str, port: int, url: str) -> None:
    """Open `url` in the browser once the server accepts connections (in a thread: uvicorn blocks)."""
    import socket
    import threading
    import time
    import webbrowser

    def wait_then_open() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, port), timeout=0.5).close()
            except OSError:
                time.sleep(0.1)
                continue
            webbrowser.open(url)
            return

    threading.Thread(target=wait_then_open, daemon=True).start()


def _saved(home: Path) -> tuple[str, int] | None:
    try:
        data = json.loads((home / LOGIN_FILE).read_text())
        return str(data["secret"]), int(data["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(home: Path, secret: str, token_id: int) -> None:
    """Written whole (a temp file, fsync, rename), readable by this user only."""
    home.mkdir(parents=True, exist_ok=True)
    write_atomic(home / LOGIN_FILE, json.dumps({"secret": secret, "id": token_id}), mode=0o600)


def _local_login(reg: Registry, name: str, home: Path) -> str | None:
    """A token for the local user, so that the operator sees in the browser what the CLI shows:
    the one an earlier launch made while it has an hour left (not revoked), else a new 12-hour one.
    A server always authenticates: the first time, the user is made a global admin of this
    registry (the operator could do that with `adapters user add`). None when other users exist
    and none has this name: then the person logs in with their own token."""
    from registry.access.principal import OPERATOR
    from registry.services import accounts

    users = {u.name for u in accounts.list_users(reg, principal=OPERATOR)}
    if name not in users:
        if users:
            return None
        accounts.add_user(reg, name, admin=True, principal=OPERATOR)
    saved = _saved(home)
    if saved is not None:
        secret, token_id = saved
        mine = accounts.list_tokens(reg, name, principal=OPERATOR)
        found = next((t for t in mine if t.id == token_id and t.revoked_at is None), None)
        if (
            found is not None
            and found.expires_at is not None
            and found.expires_at - datetime.now(UTC) >= REUSE_MIN_LEFT
            and tokens.display_prefix(secret) == found.prefix
        ):
            return secret
    secret, info = accounts.create_token(
        reg, name, expires_in=timedelta(hours=LOGIN_TTL_H), name="adapters ui", principal=OPERATOR
    )
    _save(home, secret, info.id)
    return secret


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-browser", is_flag=True, help="Print the address; open no browser.")
@click.option("--no-worker", is_flag=True, help="Run no job worker in the server process.")
@json_option
@pass_app
def ui(app: App, host: str, port: int, no_browser: bool, no_worker: bool, as_json: bool) -> None:
    """Open the web UI. With ADAPTERS_URL set, that server's /ui; otherwise serve the embedded
    registry here (migrating it first) and log the local user in with a 12-hour token."""
    settings = app.settings
    if settings.url:
        url = settings.url.rstrip("/") + "/ui"
        emit({"url": url, "server": "remote"}, as_json, lambda d: say(f"web UI at {d['url']}"))
        if not no_browser:
            import webbrowser

            webbrowser.open(url)
        return

    from cli.server import run_server
    from registry.api import create_app
    from registry.services.accounts import check_user_name
    from registry.services.context import Registry
    from registry.ui import login_link

    reg = Registry.from_settings(settings, migrate=True)
    url = f"http://{host}:{port}/ui"
    token = _local_login(reg, check_user_name(settings.user), settings.home)
    server = create_app(settings, reg, worker=app.jobs_here and not no_worker)
    # A one-time link: the browser opens it and is logged in; the token itself is never printed.
    link = f"http://{host}:{port}{login_link(server, token)}" if token else None
    if as_json:
        emit_json(
            {"url": url, "server": "embedded", "user": settings.user if token else None, "login_url": link}
        )
    else:
        say(f"web UI at {url}")
        if link:
            say(f"log in as {settings.user} (once, within 10 minutes) with {link}")
        else:
            say("log in with your token (`adapters token create --user NAME` makes one)")
    if not no_browser:
        _open_when_up(host, port, link or f"{url}/login")
    run_server(server, settings, host, port, "warning")


COMMANDS: list[click.Command] = [ui]
