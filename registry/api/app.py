"""The app factory: settings, database and blob store are built here and injected."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from registry import __version__, ui
from registry.api import observe, problems, security
from registry.api.background import every
from registry.api.guard import RequestGuard
from registry.api.hub import discovery
from registry.api.hub import router as hub_router
from registry.api.routes import (
    access,
    aliases,
    bases,
    blobs,
    evals,
    health,
    jobs,
    lifecycle,
    signatures,
    versions,
)
from registry.api.uploads import UploadSlots
from registry.config import Settings
from registry.services.context import Registry
from registry.services.hub_lfs import PartStore
from registry.services.security import SecurityMonitor
from registry.startup import load_secret_key, refuse_example_credentials

log = logging.getLogger("registry.api")
PART_SWEEP_S = 300.0
"""How often a server sweeps the parts of Hub multipart uploads nobody completed."""


def _first_admin_hint(reg: Registry) -> None:
    """A server always authenticates: with no user yet, say how the operator makes the first admin."""
    from registry.services.accounts import has_users

    try:
        if has_users(reg):
            return
    except Exception as err:  # the database may be down at start-up; /readyz tells
        log.warning("could not look for users: %s", type(err).__name__)
        return
    log.warning(
        "no user exists: every request is anonymous. With direct database access "
        "(ADAPTERS_DATABASE_URL set, ADAPTERS_URL unset) run `adapters user add NAME --admin` and "
        "`adapters token create --user NAME`, then send the token as ADAPTERS_TOKEN"
    )


def create_app(
    settings: Settings | None = None, registry: Registry | None = None, worker: bool = False
) -> FastAPI:
    """Build the API. The database schema must be current (`adapters db upgrade`; `serve` runs it).
    With `worker`, one job worker runs in a thread beside the server while it is up."""
    settings = settings or Settings()
    refuse_example_credentials(settings)  # before anything connects (registry/startup.py)
    secret_key = load_secret_key(settings)  # read once: every signature this server makes uses it
    owned = registry is None
    reg = registry or Registry.from_settings(settings)
    monitor = SecurityMonitor.from_settings(settings)  # failed authentications, denied writes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upload_slots = UploadSlots(settings)
        try:
            removed = reg.store.remove_stale_uploads(settings.stale_upload_s)
        except Exception as err:  # a store down at start-up must not stop the server; /readyz tells
            log.warning("could not look for stale partial uploads: %s", type(err).__name__)
        else:
            if removed:
                log.warning("removed %d stale partial uploads from the blob store", removed)
        try:  # parts of Hub multipart uploads a killed server or client never completed
            removed = PartStore.of(reg.store).remove_stale(settings.stale_upload_s)
        except Exception as err:  # a store down must not stop the server either
            log.warning("could not look for stale Hub upload parts: %s", type(err).__name__)
        else:
            if removed:
                log.warning("removed the parts of %d stale Hub multipart uploads", removed)
        _first_admin_hint(reg)
        thread = None
        if worker and importlib.util.find_spec("torch") is None:
            # An API-only install (the Docker image): jobs wait for `adapters worker` processes.
            log.warning("torch is not installed: no in-process job worker; run `adapters worker`")
        elif worker:
            from registry.worker import Worker, WorkerSettings, WorkerThread

            thread = WorkerThread(Worker(reg, WorkerSettings.from_settings(settings))).start()
        parts = PartStore.of(reg.store)
        sweep = partial(parts.remove_stale, settings.stale_upload_s)
        # Stale Hub upload parts, swept now and then rather than at every completion (each sweep
        # lists every staged upload: a writer could stage a million; found by review).
        async with (
            security.flushing(reg, monitor),
            discovery.counting_downloads(reg),
            every(PART_SWEEP_S, sweep, lambda: None),
        ):
            yield
        if thread is not None:
            thread.stop()
        if owned:
            reg.close()

    app = FastAPI(
        title="adapter-registry",
        version=__version__,
        lifespan=lifespan,
        description="Registry and versioning for LoRA/PEFT adapters",
        default_response_class=problems.SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.registry = reg
    app.state.secret_key = secret_key
    problems.install(app)
    security.install(app, monitor, settings)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_request_bytes)
    observe.install(app, settings, reg)  # outermost: metrics, the JSON access record, the drain
    for module in (health, access, blobs, versions, aliases, bases, jobs, lifecycle, signatures):
        app.include_router(module.router)
    for router in evals.routers:
        app.include_router(router)
    ui.mount(app)  # the web UI at /ui, before the Hub's catch-all routes at the root
    app.include_router(hub_router)  # the Hugging Face Hub protocol, at the root
    return app
