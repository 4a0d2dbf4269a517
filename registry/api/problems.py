"""Every error leaves the API as application/problem+json with a stable `code` and the request id."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException

import storage
from registry.errors import PayloadTooLarge, RegistryError, from_storage_error

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
MAX_DETAIL = 2000


class SafeJSONResponse(JSONResponse):
    """JSON that any stored text can pass through: non-ASCII is escaped (a lone surrogate becomes
    its escape instead of a UnicodeEncodeError) and NaN is refused. The app's default response."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def render_problem(body: dict[str, Any], status: int) -> tuple[bytes, dict[str, str]]:
    """The bytes and headers of a problem response; never fails on what the body echoes back."""
    try:
        raw = json.dumps(body, ensure_ascii=True, allow_nan=False, default=str).encode("ascii")
    except (ValueError, TypeError, RecursionError):
        keep = {k: body[k] for k in ("type", "title", "status", "code", "request_id") if k in body}
        raw = json.dumps(keep | {"detail": str(body.get("title", ""))}, ensure_ascii=True).encode("ascii")
    return raw, {"content-type": PROBLEM, "content-length": str(len(raw))}


def problem_response(
    request: Request, err: RegistryError, headers: Mapping[str, str] | None = None
) -> Response:
    body = err.to_problem()
    if isinstance(body.get("detail"), str) and len(body["detail"]) > MAX_DETAIL:
        body["detail"] = body["detail"][:MAX_DETAIL] + "..."
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    raw, base = render_problem(body, err.status)
    return Response(raw, status_code=err.status, headers={**base, **(headers or {})})


def problem(status: int, code: str, title: str, detail: str, **extra: object) -> RegistryError:
    err = RegistryError(detail, **extra)
    err.code, err.status, err.title = code, status, title  # type: ignore[misc]
    return err


def install(app: FastAPI) -> None:
    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, err: RegistryError) -> Response:
        if err.status >= 500:
            log.warning("request %s: %s", getattr(request.state, "request_id", "-"), err)
        return problem_response(request, err, err.headers)

    @app.exception_handler(storage.StorageError)
    async def storage_error(request: Request, err: Exception) -> Response:
        return problem_response(request, from_storage_error(err))

    # The S3 SDK's own error, raised past the store (an access denied, a missing bucket): a
    # storage_error problem, not a 500. Imported here so a server on file:// never loads minio.
    try:
        from minio.error import S3Error
    except ImportError:  # pragma: no cover - minio is a dependency
        pass
    else:
        app.add_exception_handler(S3Error, storage_error)

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(PydanticValidationError)  # an entity built from request values in a route
    async def validation_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, RequestValidationError | PydanticValidationError)
        errors = [
            {"loc": [str(p)[:64] for p in e.get("loc", ())][:8], "msg": str(e.get("msg"))[:300]}
            for e in err.errors()[:20]
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(
            request, problem(422, "validation_error", "Request validation failed", detail, errors=errors)
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: PayloadTooLarge.code}.get(
            err.status_code, "http_error"
        )
        return problem_response(
            request, problem(err.status_code, code, str(err.detail), str(err.detail)), err.headers
        )
