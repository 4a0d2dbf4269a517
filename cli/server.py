"""`adapters serve` and `adapters db upgrade`: running a registry server and migrating its database."""

from __future__ import annotations

import click

from cli.app import App, pass_app
from cli.output import emit, emit_json, json_option, say


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Run no job worker in the server process.")
@json_option
@pass_app
def serve(app: App, host: str, port: int, no_worker: bool, as_json: bool) -> None:
    """Run the REST API (migrating the database first) with one job worker thread beside it.
    OpenAPI docs at /docs."""
    import uvicorn

    from registry.api import create_app
    from registry.errors import BadRequest
    from registry.services.context import Registry

    settings = app.settings
    if settings.url:
        raise BadRequest("ADAPTERS_URL is set: `serve` runs a server, it does not talk to one; unset it")
    reg = Registry.from_settings(settings, migrate=True)
    if as_json:  # where it serves, before uvicorn's log lines
        emit_json(
            {
                "url": f"http://{host}:{port}",
                "database": settings.effective_database_url.split("@")[-1],
                "blobs": reg.store.url,
            }
        )
    worker = app.jobs_here and not no_worker
    uvicorn.run(create_app(settings, reg, worker=worker), host=host, port=port, log_level="info")


@click.group()
def db() -> None:
    """Database schema management."""


@db.command()
@json_option
@pass_app
def upgrade(app: App, as_json: bool) -> None:
    """Apply every pending Alembic migration to ADAPTERS_DATABASE_URL."""
    from registry.db.engine import current_revision, make_engine
    from registry.db.engine import upgrade as run_upgrade

    engine = make_engine(app.settings.effective_database_url)
    try:
        before = current_revision(engine)
        run_upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    doc = {"from": before, "to": after}
    emit(doc, as_json, lambda _: say(f"database at revision {after} (was {before or 'empty'})"))


COMMANDS = [serve, db]
