"""Errors as the Hub gives them, in one place: a status, `X-Error-Code` / `X-Error-Message`
headers and a JSON body with `error`, so huggingface_hub's `hf_raise_for_status` raises its own
RepositoryNotFoundError, RevisionNotFoundError and EntryNotFoundError."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

import storage
from registry.api.problems import SafeJSONResponse
from registry.errors import (
    EntryNotFound,
    NotFound,
    RegistryError,
    RepoNotFound,
    RevisionNotFound,
    ValidationFailed,
    from_storage_error,
)

log = logging.getLogger("registry.api.hub")
MAX_HEADER_MESSAGE = 300


def hub_error_code(err: RegistryError) -> str:
    """The Hub's X-Error-Code for a registry error; other errors by their own code, CamelCased."""
    if isinstance(err, RevisionNotFound):
        return "RevisionNotFound"
    if isinstance(err, RepoNotFound):
        return "RepoNotFound"
    if isinstance(err, NotFound):  # a file of the revision (EntryNotFound), or its blob
        return "EntryNotFound"
    return "".join(part.capitalize() for part in err.code.split("_"))


def _header_text(text: str) -> str:
    """A header value any HTTP stack can carry: printable ASCII, one line, capped."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else " " for c in ascii_text)[:MAX_HEADER_MESSAGE]


def hub_error_response(request: Request, err: RegistryError) -> Response:
    if err.status >= 500:
        log.warning("request %s: %s", getattr(request.state, "request_id", "-"), err)
    headers = {
        **err.headers,
        "X-Error-Code": hub_error_code(err),
        # The registry's code leads the message: clients print X-Error-Message, not X-Error-Code.
        "X-Error-Message": _header_text(f"{err.code}: {err.message}"),
    }
    if isinstance(err, EntryNotFound) and err.commit:
        headers["X-Repo-Commit"] = err.commit  # the client caches the file's absence at this commit
    body = {"error": err.message, "code": err.code}
    return SafeJSONResponse(body, status_code=err.status, headers=headers)


class HubRoute(APIRoute):
    """Every Hub route answers its errors the Hub's way instead of as problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RegistryError as err:
                return hub_error_response(request, err)
            except storage.StorageError as err:
                return hub_error_response(request, from_storage_error(err))
            except RequestValidationError as err:
                detail = "; ".join(str(e.get("msg")) for e in err.errors()[:5])
                return hub_error_response(request, ValidationFailed(f"invalid request: {detail}"))

        return route
