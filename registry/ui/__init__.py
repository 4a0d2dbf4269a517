"""The web UI at /ui: server-rendered pages (Jinja2, SVG drawn on the server) over the services,
with the API's permissions (the principal comes from a login cookie instead of a header)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from registry.ui import pages_auth, pages_bases, pages_browse, pages_jobs, session
from registry.ui.render import static_files


def mount(app: FastAPI) -> None:
    """Add the UI's routes and its static files to the API app."""
    app.state.login_links = session.LoginLinks()
    app.add_api_route("/", _to_ui, methods=["GET", "HEAD"], include_in_schema=False)
    for module in (pages_auth, pages_browse, pages_bases, pages_jobs):
        app.include_router(module.router)
    app.mount("/ui/static", static_files(), name="ui-static")


def _to_ui() -> RedirectResponse:
    """`/` is the UI's front page (a browser pointed at the server's address lands somewhere)."""
    return RedirectResponse("/ui", status_code=307)


def login_link(app: FastAPI, secret: str) -> str:
    """The path of a one-time link that logs a browser in with `secret` (`adapters ui`)."""
    links: session.LoginLinks = app.state.login_links
    return f"/ui/login/once?n={links.issue(secret)}"
