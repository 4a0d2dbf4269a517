"""The app factory: settings, database and blob store are built here and injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from registry import __version__
from registry.api import problems
from registry.api.routes import aliases, bases, blobs, health, versions
from registry.config import Settings
from registry.services.context import Registry


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """Build the API. The database schema must be current (`adapters db upgrade`; `serve` runs it)."""
    settings = settings or Settings()
    owned = registry is None
    reg = registry or Registry.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            reg.close()

    app = FastAPI(
        title="adapter-registry",
        version=__version__,
        lifespan=lifespan,
        description="Registry and versioning for LoRA/PEFT adapters",
    )
    app.state.settings = settings
    app.state.registry = reg
    problems.install(app)
    for module in (health, blobs, versions, aliases, bases):
        app.include_router(module.router)
    return app
