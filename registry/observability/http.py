"""A process's /metrics on a port of its own: what `adapters worker --metrics-port` serves.

A worker has no HTTP server; this is a small threaded WSGI one (the server prometheus_client's
`start_http_server` uses), with the metrics token check of the API's /metrics.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from registry.observability.metrics import CONTENT_TYPE, Metrics

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """A scrape every few seconds is no news."""


def metrics_app(metrics: Metrics, collectors: Iterable[Collector], token: str | None) -> Callable[..., Any]:
    """A WSGI app answering GET /metrics (with `token`: only to `Authorization: Bearer <token>`)."""
    expected = f"Bearer {token}".encode() if token else None
    collectors = tuple(collectors)

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only GET /metrics here\n"]
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1", "replace")
        if expected is not None and not hmac.compare_digest(given, expected):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            )
            return [b"/metrics needs the metrics token (ADAPTERS_METRICS_TOKEN) as a bearer token\n"]
        page = metrics.exposition(collectors)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(page)))])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else page]

    return app


class MetricsServer:
    """/metrics served from a daemon thread until `stop()`."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        collectors: Iterable[Collector] = (),
        token: str | None = None,
    ) -> None:
        self._server = make_server(
            host, port, metrics_app(metrics, collectors, token), ThreadingWSGIServer, handler_class=_Quiet
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
