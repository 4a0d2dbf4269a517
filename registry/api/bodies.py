"""JSON request bodies parsed off the event loop.

FastAPI reads a route's JSON body with `json.loads` on the event loop, before any dependency runs:
anyone, authenticated or not, could send a body of ADAPTERS_MAX_REQUEST_BYTES and hold every other
request (a 60 MB array of zeros took 1.7 s to parse, a 16 MB one 0.4 s, measured for issue 21). The
/v1 routes use `ApiRoute`, whose requests parse a large body on a worker thread; a small one is
parsed in place, where a thread hop would cost more than the parse, and a body larger than any
route needs is refused before it is parsed. Validation stays FastAPI's, on the parsed value (30 ms
for a 10,000-file push)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from registry.bounds import JSON_BODY_BYTES, JSON_BODY_VALUES
from registry.errors import PayloadTooLarge

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop (well under a millisecond)."""


class OffLoopJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                check_size(body)
            except PayloadTooLarge as err:  # FastAPI turns anything else raised here into a 400
                raise HTTPException(413, err.message) from err
            if len(body) <= INLINE_PARSE_BYTES:
                self._json = json.loads(body)
            else:
                self._json = await anyio.to_thread.run_sync(json.loads, body)
        return self._json


def check_size(body: bytes) -> None:
    """Refuse, before parsing, a JSON body larger than any route needs (a Hub commit, read line by
    line, excepted). A thread does not free the
    event loop from a parse: json's C parser holds the GIL for the whole document (64 MiB of zeros:
    1.9 s of /healthz waiting with the parse on a thread). Counting commas, in C, bounds the number
    of values: 1M zeros parse in about 50 ms, a 16 MiB string in 35 ms."""
    if len(body) > JSON_BODY_BYTES:
        raise PayloadTooLarge(f"a JSON body is at most {JSON_BODY_BYTES} bytes")
    if body.count(b",") > JSON_BODY_VALUES:
        raise PayloadTooLarge(f"a JSON body holds at most {JSON_BODY_VALUES} values")


class ApiRoute(APIRoute):
    """A route whose JSON body is parsed as `OffLoopJsonRequest` does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(OffLoopJsonRequest(request.scope, request.receive))

        return route
