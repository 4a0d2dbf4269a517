"""The outermost layer of every request: a request id, framing checks, and the last word on errors.

Starlette's own server-error middleware answers an unhandled exception with a 500 and then
re-raises it, and uvicorn closes the connection of a request that raised: the probe's clients lost
their keep-alive connection with every 500. Here the exception is answered and not re-raised, the
body is generic (the details, which carried SQL, parameters and hosts, go to the log under the
request id), and a lost database or blob store is a 503 the client may retry.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.problems import render_problem
from registry.bounds import JSON_BODY_BYTES
from registry.errors import (
    BadRequest,
    InternalError,
    PayloadTooLarge,
    RegistryError,
    ServerUnavailable,
    ValidationFailed,
)

log = logging.getLogger("registry.api")
REQUEST_ID_HEADER = b"x-request-id"


def classify(err: BaseException) -> RegistryError:
    """The client's view of an exception nothing else handled: generic, with no internals."""
    from sqlalchemy import exc as sa

    if _database_unreachable(err):
        return ServerUnavailable("the database is unavailable; retry shortly")
    if isinstance(err, sa.TimeoutError):  # the connection pool is exhausted
        return ServerUnavailable("the database is busy; retry shortly")
    if isinstance(err, sa.DataError):
        # A value the column cannot hold that validation missed: the client's input, not our fault.
        return ValidationFailed("a value is out of range for the registry's database")
    if isinstance(err, ConnectionError | TimeoutError) or _is_storage_unreachable(err):
        return ServerUnavailable("the blob store is unavailable; retry shortly")
    return InternalError("internal error; the server log has the details under this request id")


def _database_unreachable(err: BaseException) -> bool:
    """A lost or refused database connection anywhere in the exception's chain. A connection killed
    under the pool's pre-ping surfaced as a ProgrammingError ("can't change 'autocommit' now")
    raised while handling the driver's OperationalError: the chain, not the last error, tells."""
    from sqlalchemy import exc as sa

    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, sa.DBAPIError):
            schema_fault = isinstance(node, sa.OperationalError) and "no such " in str(node.orig)  # SQLite
            if not schema_fault and (
                node.connection_invalidated or isinstance(node, sa.OperationalError | sa.InterfaceError)
            ):
                return True
        elif (
            type(node).__name__ in ("OperationalError", "InterfaceError")
            and "sqlite" not in type(node).__module__
        ):
            return True  # the driver's own (psycopg) error, before SQLAlchemy wrapped it
        node = node.__cause__ or node.__context__
    return False


def _is_storage_unreachable(err: BaseException) -> bool:
    try:
        from urllib3.exceptions import HTTPError as Urllib3Error
    except ImportError:  # pragma: no cover - minio depends on urllib3
        return False
    return isinstance(err, Urllib3Error)


class RequestGuard:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streamed blob bodies)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        framing = _framing_problem(scope, self.max_body_bytes)
        if framing is not None:
            await _answer(framing, request_id, send_with_id)
            return
        if not _is_blob_upload(scope):
            receive = _capped(
                receive, _body_cap(scope, self.max_body_bytes), _cap_name(scope, self.max_body_bytes)
            )
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as err:
            mapped = err if isinstance(err, RegistryError) else classify(err)
            log.exception(
                "request %s %s %s failed: %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                mapped.code,
            )
            if started:
                raise  # the response is under way: nothing sensible can be sent any more
            await _answer(mapped, request_id, send_with_id)


def _incoming_id(scope: Scope) -> str | None:
    for k, v in scope["headers"]:
        if k == REQUEST_ID_HEADER:
            text = v.decode("latin-1")
            # A proxy's id is kept when it is a plain token; anything else is replaced.
            if 0 < len(text) <= 64 and all(c.isalnum() or c in "-_." for c in text):
                return text
    return None


def _is_blob_upload(scope: Scope) -> bool:
    # Blob bodies are capped by ADAPTERS_MAX_PUSH_BYTES in their route, before they are read
    # (the Hub protocol's one-time LFS upload URLs too: registry/api/hub/write.py).
    # Xet's xorbs too: capped by formats/xet.py MAX_XORB_BYTES in their route (registry/api/hub/xet).
    path = str(scope.get("path", ""))
    if scope.get("method") == "POST" and path.startswith("/api/xet-cas/v1/xorbs/"):
        return True
    return scope.get("method") == "PUT" and path.startswith(("/v1/blobs/", "/api/lfs-upload/"))


def _framing_problem(scope: Scope, max_body_bytes: int) -> RegistryError | None:
    """A request with both Transfer-Encoding and Content-Length is ambiguous (request smuggling
    through a proxy that reads the other one): refused. So is a NUL anywhere in the target, and a
    declared body over the cap (before a byte of it is read)."""
    headers = {k.lower(): v for k, v in scope["headers"]}
    if b"transfer-encoding" in headers and b"content-length" in headers:
        return BadRequest("a request may not carry both Transfer-Encoding and Content-Length")
    if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
        return BadRequest("the request target contains a NUL character")
    declared = headers.get(b"content-length", b"")
    cap = _body_cap(scope, max_body_bytes)
    if not _is_blob_upload(scope) and declared.isdigit() and (len(declared) > 19 or int(declared) > cap):
        return PayloadTooLarge(f"request body over {cap} bytes{_cap_name(scope, max_body_bytes)}")
    return None


def _body_cap(scope: Scope, max_body_bytes: int) -> int:
    """Bodies are JSON (or a small form), capped before a byte is read at what any route needs
    (receiving a 64 MiB body alone held the event loop for 100 ms); Hub commits carry files inline,
    and Xet's xorbs and shards are binary: those take up to ADAPTERS_MAX_REQUEST_BYTES."""
    path = str(scope.get("path", ""))
    if path.startswith("/api/xet-cas/") or (path.startswith("/api/") and "/commit/" in path):
        return max_body_bytes
    return min(max_body_bytes, JSON_BODY_BYTES)


def _cap_name(scope: Scope, max_body_bytes: int) -> str:
    return "" if _body_cap(scope, max_body_bytes) < max_body_bytes else " (ADAPTERS_MAX_REQUEST_BYTES)"


def _capped(receive: Receive, max_body_bytes: int, cap_name: str) -> Receive:
    """A body sent without Content-Length (chunked) is counted as it arrives."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_body_bytes:
                # An HTTPException: FastAPI re-raises those from a body read (others become 400).
                raise HTTPException(413, f"request body over {max_body_bytes} bytes{cap_name}")
        return message

    return wrapped


async def _answer(err: RegistryError, request_id: str, send: Send) -> None:
    body, headers = render_problem(err.to_problem() | {"request_id": request_id}, err.status)
    raw_headers: list[Any] = [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
