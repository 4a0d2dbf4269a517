"""Blob presence, streamed and verified upload, download with Range (registry/api/blob_response.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from registry.access.checks import require_writer
from registry.api.blob_response import blob_response
from registry.api.bodies import ApiRoute
from registry.api.deps import PrincipalDep, RegistryDep, SettingsDep
from registry.api.uploads import UploadSlots
from registry.entities import MissingBlobs
from registry.errors import BadRequest, NotFound, PushTooLarge
from registry.services.blobs import missing_for, require_readable, upload_as
from storage import check_digest

router = APIRouter(prefix="/v1/blobs", tags=["blobs"], route_class=ApiRoute)


class DigestList(BaseModel):
    digests: list[str]


@router.post("/missing")
def check_missing(body: DigestList, reg: RegistryDep, principal: PrincipalDep) -> MissingBlobs:
    """Which of these digests does the store lack? A push uploads only those."""
    return MissingBlobs(missing=missing_for(reg, principal, body.digests))


@router.head("/{digest}")
def head_blob(digest: str, reg: RegistryDep, principal: PrincipalDep) -> Response:
    """Served only to a caller who may read a version or base that lists the blob."""
    try:
        require_readable(reg, principal, check_digest(digest))
    except NotFound:
        return Response(status_code=404)
    info = reg.store.stat(digest)
    if info is None:
        return Response(status_code=404)
    return Response(headers={"Content-Length": str(info.size), "Accept-Ranges": "bytes"})


@router.put("/{digest}", status_code=201)
async def put_blob(
    digest: str,
    request: Request,
    reg: RegistryDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> dict[str, object]:
    """Stream the body into the store; sha256 and length are verified before it becomes visible.

    Uploads run on threads of their own, shared fairly between users, with a deadline on the body
    (registry/api/uploads.py): clients that trickle bytes never starve the other routes or users."""
    check_digest(digest)
    require_writer(principal)  # before a byte of the body is read
    # Read from the request, not declared as a parameter: it is framing (the server has already
    # checked it is a number), not an API input a client chooses apart from its body.
    declared = request.headers.get("content-length")
    if declared is None:
        raise BadRequest("Content-Length is required for blob uploads")
    content_length = int(declared)
    if content_length > settings.max_push_bytes:
        raise PushTooLarge(
            f"blob of {content_length} bytes; the limit is {settings.max_push_bytes} (ADAPTERS_MAX_PUSH_BYTES)",
            size=content_length,
            limit=settings.max_push_bytes,
        )
    slots: UploadSlots = request.app.state.upload_slots
    reader = slots.reader(request.stream().__aiter__(), content_length)
    info = await slots.run(
        principal.user_id, lambda: upload_as(reg, principal, reader, digest, content_length)
    )
    return {"digest": info.digest, "size": info.size}


@router.get("/{digest}")
def get_blob(
    digest: str,
    reg: RegistryDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    require_readable(reg, principal, check_digest(digest))  # as if absent when it may not be read
    info = reg.store.stat(digest)
    if info is None:
        raise NotFound(f"blob {digest} does not exist", digest=digest)
    if settings.s3_presign_downloads:
        url = reg.store.url_for(digest)
        if url:
            return RedirectResponse(url, status_code=307)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{digest}"'}
    return blob_response(reg.store, digest, info.size, range_header, headers)
