"""Liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from registry.api.bodies import ApiRoute
from registry.api.deps import RegistryDep
from registry.db.engine import current_revision
from registry.db.revisions import head_revision
from registry.errors import ServerUnavailable

router = APIRouter(tags=["health"], route_class=ApiRoute)
log = logging.getLogger("registry.api")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answered on the event loop, so busy worker threads never make it time out."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(reg: RegistryDep) -> dict[str, str]:
    """Readiness: which of the database and the blob store is down, and whether the schema is
    current. It names components, never hosts, ports or paths (the log has the details)."""

    def check() -> dict[str, str]:
        status = {"database": "ok", "blobs": "ok"}
        revision = None
        try:
            with reg.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            revision = current_revision(reg.engine)
        except Exception as err:
            log.warning("readiness: database check failed: %s", err)
            status["database"] = "unavailable"
        try:
            reg.store.check()
        except Exception as err:
            log.warning("readiness: blob store check failed: %s", err)
            status["blobs"] = "unavailable"
        if status["database"] == "ok" and revision != head_revision():
            status["database"] = "schema_outdated"
        down = [k for k, v in status.items() if v != "ok"]
        if down:
            hint = " (run `adapters db upgrade`)" if status["database"] == "schema_outdated" else ""
            raise ServerUnavailable(f"not ready: {', '.join(down)}{hint}", **status)
        return {"status": "ready", "database": "ok", "blobs": "ok", "revision": str(revision)}

    return await run_in_threadpool(check)
