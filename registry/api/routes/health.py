"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from registry.api.deps import RegistryDep
from registry.db.engine import current_revision, head_revision
from registry.errors import ServerUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(reg: RegistryDep) -> dict[str, str]:
    def check() -> dict[str, str]:
        try:
            with reg.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            revision = current_revision(reg.engine)
            reg.store.check()
        except Exception as err:
            raise ServerUnavailable(f"not ready: {type(err).__name__}: {err}") from err
        if revision != head_revision():
            raise ServerUnavailable(
                f"database at revision {revision}, expected {head_revision()}; run `adapters db upgrade`"
            )
        return {"status": "ready", "database": str(revision), "blobs": reg.store.url}

    return await run_in_threadpool(check)
