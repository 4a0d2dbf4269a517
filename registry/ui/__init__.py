"""The web UI at /ui: server-rendered pages (Jinja2, SVG drawn on the server) over the services,
with the API's permissions (the principal comes from a login cookie instead of a header)."""

from __future__ import annotations

from fastapi import FastAPI

from registry.ui import pages_auth, pages_bases, pages_browse, pages_jobs
from registry.ui.render import static_files


def mount(app: FastAPI) -> None:
    """Add the UI's routes and its static files to the API app."""
    for module in (pages_auth, pages_browse, pages_bases, pages_jobs):
        app.include_router(module.router)
    app.mount("/ui/static", static_files(), name="ui-static")
