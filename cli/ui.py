"""`adapters ui`: open the web UI (issue 13): a server on the embedded default, or the /ui of the
server ADAPTERS_URL names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.app import App, pass_app
from cli.output import emit, emit_json, json_option, say

if TYPE_CHECKING:
    from registry.services.context import Registry

LOGIN_TTL_H = 12
"""The UI token `adapters ui` makes for the local user lives this long: a browser session, not a key."""


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


def _local_login(reg: Registry, name: str) -> str | None:
    """A short-lived token for the local user, so that the operator sees in the browser what the
    CLI shows. A server always authenticates: the first time, the user is made a global admin of
    this registry (the operator could do that with `adapters user add`). None when other users
    exist and none has this name: then the person logs in with their own token."""
    from datetime import timedelta

    from registry.access.principal import OPERATOR
    from registry.services import accounts

    users = {u.name for u in accounts.list_users(reg, principal=OPERATOR)}
    if name not in users:
        if users:
            return None
        accounts.add_user(reg, name, admin=True, principal=OPERATOR)
    secret, _ = accounts.create_token(
        reg, name, expires_in=timedelta(hours=LOGIN_TTL_H), name="adapters ui", principal=OPERATOR
    )
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

    reg = Registry.from_settings(settings, migrate=True)
    url = f"http://{host}:{port}/ui"
    token = _local_login(reg, check_user_name(settings.user))
    if as_json:
        emit_json(
            {"url": url, "server": "embedded", "user": settings.user if token else None, "token": token}
        )
    else:
        say(f"web UI at {url}")
        if token:
            say(f"log in as {settings.user} with this token (valid {LOGIN_TTL_H} h): {token}")
        else:
            say("log in with your token (`adapters token create --user NAME` makes one)")
    if not no_browser:
        _open_when_up(host, port, f"{url}/login")
    run_server(
        create_app(settings, reg, worker=app.jobs_here and not no_worker), settings, host, port, "warning"
    )


COMMANDS: list[click.Command] = [ui]
