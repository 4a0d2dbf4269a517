"""The outermost layer of every request: what an operator sees of it, and the drain after SIGTERM.

- Metrics (`registry.observability.metrics`): each answer counted by method, route template and
  status, its latency and body bytes. The template is read from the route Starlette matched
  (`scope["route"]`, set on the scope this layer passed down), `unmatched` when none did: a label
  never holds a path.
- `GET /metrics`: the Prometheus text page, open, or with ADAPTERS_METRICS_TOKEN only to
  `Authorization: Bearer <that token>`. Its scrape-time gauges (the job queue) query the database
  on a thread, never on the event loop.
- With `ADAPTERS_LOG_FORMAT=json`, one `registry.access` record per answer (`observability.logs`).
- Drain: after SIGTERM (`cli/server.py` DrainingServer), /readyz answers 503 so a load balancer
  stops sending, new requests are refused 503 with `Connection: close` (a retrying client goes to
  another replica), and requests already in flight (uploads) run on; the server stops when none
  is left or ADAPTERS_SHUTDOWN_DEADLINE_S has passed.

Pure ASGI (no BaseHTTPMiddleware: it would buffer streamed blob bodies), and nothing here touches
the database on the request path: a few counter increments per request.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.access.addresses import source_of
from registry.access.principal import Principal
from registry.api.problems import render_problem
from registry.config import Settings
from registry.errors import RegistryError, ServerUnavailable, Unauthenticated
from registry.observability.metrics import (
    CONTENT_TYPE,
    ROUTE_DRAINING,
    ROUTE_UNMATCHED,
    JobQueueCollector,
    Metrics,
    UploadSlotsCollector,
    method_label,
    process_metrics,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from registry.services.context import Registry

access_log = logging.getLogger("registry.access")
METRICS_PATH = "/metrics"
PROBES = frozenset({"/healthz", "/readyz", METRICS_PATH})
"""Answered while draining, and not counted as in flight (a scraper must not hold a drain open)."""


def install(app: FastAPI, settings: Settings, reg: Registry) -> Drain:
    """Observe every request of `app` (call last: this layer stays outermost); the drain it shares
    with the server that runs it is `app.state.drain`."""
    metrics = process_metrics().install()
    drain = app.state.drain = Drain(settings.shutdown_deadline_s)
    collectors = (
        UploadSlotsCollector(lambda: getattr(app.state, "upload_slots", None)),
        JobQueueCollector(reg),
    )
    app.add_middleware(Observe, metrics=metrics, drain=drain, settings=settings, collectors=collectors)
    return drain


class Drain:
    """A server's shutdown state, shared by this middleware and the uvicorn server that runs it
    (both on the event loop's thread)."""

    def __init__(self, deadline_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline_s = deadline_s
        self._clock = clock
        self.since: float | None = None
        self.in_flight = 0

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self) -> bool:
        """Start draining; False when it had started already."""
        if self.since is not None:
            return False
        self.since = self._clock()
        return True

    def done(self) -> bool:
        """Draining, and no request is left in flight or the deadline has passed."""
        if self.since is None:
            return False
        return self.in_flight <= 0 or self._clock() - self.since >= self.deadline_s


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/repos/{namespace}/{name}`), or `unmatched`."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else ROUTE_UNMATCHED


class Observe:
    """Pure ASGI middleware: metrics, the JSON access record, /metrics and the drain."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        drain: Drain,
        settings: Settings,
        collectors: Iterable[Collector] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.drain = drain
        self.settings = settings
        self.collectors = tuple(collectors)
        self.log_requests = settings.log_format == "json"
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        self._metrics_auth = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        probe = path in PROBES
        started_at = time.perf_counter()
        state = {"status": 0, "in": 0, "out": 0, "length": 0}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                state["status"] = int(message["status"])
                for k, v in message.get("headers", ()):
                    if k.lower() == b"content-length" and v.isdigit():
                        state["length"] = int(v)
                if self.drain.draining:  # the client's next request goes to another replica
                    message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
            elif kind == "http.response.body":
                state["out"] += len(message.get("body", b""))
            elif kind in ("http.response.pathsend", "http.response.zerocopysend"):
                state["out"] += state["length"]  # the file's bytes go out without passing here
            await send(message)

        route: str | None = None
        if self.drain.draining and not probe:
            route = ROUTE_DRAINING
            await _answer(
                ServerUnavailable("the server is shutting down; retry (another replica answers)"),
                counting_send,
                {"retry-after": "1"},  # and Connection: close, as every answer while draining
            )
        elif path == METRICS_PATH and scope.get("method") in ("GET", "HEAD"):
            route = METRICS_PATH
            await self._metrics_page(scope, counting_send)
        elif path == "/readyz" and self.drain.draining:
            route = "/readyz"
            await _answer(ServerUnavailable("not ready: draining", draining=True), counting_send)
        else:
            if not probe:
                self.drain.in_flight += 1
                self.metrics.in_flight.inc()
            try:
                await self.app(scope, counting_receive, counting_send)
            except BaseException:
                if not state["status"]:
                    state["status"] = 500  # what uvicorn answers for an app that raised
                raise
            finally:
                if not probe:
                    self.drain.in_flight -= 1
                    self.metrics.in_flight.dec()
                self._record(scope, route, state, started_at)
            return
        self._record(scope, route, state, started_at)

    def _record(self, scope: Scope, route: str | None, state: dict[str, int], started_at: float) -> None:
        elapsed = time.perf_counter() - started_at
        route = route or route_template(scope)
        method = method_label(str(scope.get("method", "")))
        status = state["status"]
        m = self.metrics
        m.requests.labels(method, route, str(status)).inc()
        m.duration.labels(method, route).observe(elapsed)
        if state["in"]:
            m.bytes_in.labels(route).inc(state["in"])
        if state["out"]:
            m.bytes_out.labels(route).inc(state["out"])
        if self.log_requests:
            self._log(scope, method, route, status, elapsed, state)

    def _log(
        self, scope: Scope, method: str, route: str, status: int, elapsed: float, state: dict[str, int]
    ) -> None:
        scope_state: dict[str, Any] = scope.get("state", {})
        principal = scope_state.get("principal")
        user = principal.name if isinstance(principal, Principal) else None
        level = logging.ERROR if status >= 500 else logging.INFO
        access_log.log(
            level,
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "request_id": scope_state.get("request_id"),
                "user": user,
                "method": method,
                "route": route,
                "status": status,
                "duration_s": round(elapsed, 6),
                "bytes_in": state["in"],
                "bytes_out": state["out"],
                "client": source_of(scope, self.settings),
            },
        )

    async def _metrics_page(self, scope: Scope, send: Send) -> None:
        if self._metrics_auth is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._metrics_auth):
                err = Unauthenticated(
                    "/metrics needs the metrics token (ADAPTERS_METRICS_TOKEN) as a bearer token"
                )
                await _answer(err, send, {"www-authenticate": 'Bearer realm="metrics"'})
                return
        self.metrics.draining.set(1 if self.drain.draining else 0)
        page = await anyio.to_thread.run_sync(self.metrics.exposition, self.collectors)
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(page)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else page})


async def _answer(err: RegistryError, send: Send, extra: dict[str, str] | None = None) -> None:
    body, headers = render_problem(err.to_problem(), err.status)
    raw: list[Any] = [(k.encode(), v.encode()) for k, v in {**headers, **(extra or {})}.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
