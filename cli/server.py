"""`adapters serve` and `adapters db upgrade`: running a registry server and migrating its database."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

import click

from cli.app import App, pass_app
from cli.output import emit, emit_json, err_console, json_option, say

if TYPE_CHECKING:
    from fastapi import FastAPI

    from registry.config import Settings
    from registry.services.context import Registry


SWITCH_INTERVAL_S = 0.0005
"""The server's GIL switch interval (run_server says why)."""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Run no job worker in the server process.")
@json_option
@pass_app
def serve(app: App, host: str, port: int, no_worker: bool, as_json: bool) -> None:
    """Run the REST API (migrating the database first) with one job worker thread beside it.
    OpenAPI docs at /docs."""
    from registry.api import create_app
    from registry.errors import BadRequest
    from registry.services.context import Registry
    from registry.startup import refuse_example_credentials

    settings = app.settings
    if settings.url:
        raise BadRequest("ADAPTERS_URL is set: `serve` runs a server, it does not talk to one; unset it")
    refuse_example_credentials(settings)  # before the migrations touch anything
    reg = Registry.from_settings(settings, migrate=True)
    users = _has_users(reg)
    if as_json:  # where it serves, before uvicorn's log lines
        emit_json(
            {
                "url": f"http://{host}:{port}",
                "database": settings.effective_database_url.split("@")[-1],
                "blobs": reg.store.url,
                "has_users": users,
            }
        )
    if users is False:
        _first_admin_howto(settings.effective_database_url)
    worker = app.jobs_here and not no_worker
    run_server(create_app(settings, reg, worker=worker), settings, host, port, "info")


def run_server(api: FastAPI, settings: Settings, host: str, port: int, log_level: str) -> None:
    """uvicorn serving `api` as `serve` and `ui` do: X-Forwarded-* only from
    ADAPTERS_TRUSTED_PROXIES, query strings kept out of the access log, and the heap built so far
    frozen. What start-up built (FastAPI, SQLAlchemy, pydantic: most of the heap) lives as long as
    the server; out of the collector's sight, a full collection set off by one request's many
    objects no longer walks it while every request waits on the GIL (issue 21: the worst pause of
    a 65k-tensor push, 246 ms -> 102 ms in-process; /healthz p99 during it 178 ms -> 79 ms).
    A thread busy with Python (a header's checks, an LFS batch answer) hands the GIL back to the
    event loop after the switch interval, and the loop needs it back after every socket call: at
    CPython's 5 ms, /healthz waited 150-300 ms p99 during that push, at 0.5 ms 69-73 ms
    (bench/abuse.py, interleaved runs)."""
    import gc
    import sys

    import uvicorn

    from cli.draining import AFTER_DRAIN_S, DrainingServer
    from registry.access.addresses import uvicorn_options
    from registry.observability.logs import logging_config

    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    json_logs = settings.log_format == "json"
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level=log_level,
        # json: one object a line, and registry.api.observe's request record replaces the access line
        log_config=logging_config("json", log_level, uvicorn=True) if json_logs else access_log_config(),
        access_log=not json_logs,
        timeout_graceful_shutdown=AFTER_DRAIN_S,
        **uvicorn_options(settings),
    )
    DrainingServer(config, getattr(api.state, "drain", None)).run()


class StripQuery(logging.Filter):
    """Drop the query string from uvicorn's access log lines: signed upload URLs (LFS) carry
    their capability there, and a log is no place for one. The path and the status stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def access_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with StripQuery on the access log and secrets masked on
    both of its handlers (registry.observability.logs.redact)."""
    from uvicorn.config import LOGGING_CONFIG

    from registry.observability.logs import RedactingFilter

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["strip_query"] = {"()": StripQuery}
    config["filters"]["redact"] = {"()": RedactingFilter}
    config["loggers"]["uvicorn.access"]["filters"] = ["strip_query"]
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config


def _has_users(reg: Registry) -> bool | None:
    from registry.services.accounts import has_users

    try:
        return has_users(reg)
    except Exception:  # the database may be down at start-up; /readyz tells
        return None


def _first_admin_howto(database_url: str) -> None:
    """A server always authenticates: with no user yet, say how the operator makes the first admin
    (on stderr; the database password is masked)."""
    from rich.markup import escape
    from sqlalchemy.engine import make_url

    shown = escape(make_url(database_url).render_as_string(hide_password=True))
    err_console.print(
        "[yellow]no user exists[/yellow]: every request is anonymous. Make the first admin and its "
        "token with direct database access (ADAPTERS_URL unset):\n"
        f"  ADAPTERS_DATABASE_URL='{shown}' adapters user add admin --admin && \\\n"
        f"  ADAPTERS_DATABASE_URL='{shown}' adapters token create --user admin\n"
        "then send the token as ADAPTERS_TOKEN (or keep it with `adapters login`).",
        highlight=False,
        markup=True,
    )


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
