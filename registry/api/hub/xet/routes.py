"""The Xet protocol's routes: the Hub's token routes (`xet-write-token`, `xet-read-token`) and
the CAS API under CAS_PREFIX (the token's `casUrl`). A thin translation onto `services.xet`.

The CAS calls carry no Hub token: hf_xet sends the CAS token (Bearer) the token route issued,
which names the user, token and repository it acts for (services/xet.py). Downloads stay on the
Hub's plain HTTP routes: no Xet headers are sent with files, so the client fetches them there."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from registry.access.principal import Principal
from registry.api.deps import PrincipalDep, RegistryDep, SettingsDep
from registry.api.hub.common import RepoIdDep, hub_route
from registry.api.hub.errors import HubRoute
from registry.api.uploads import UploadSlots
from registry.config import Settings
from registry.errors import BadRequest, NotFound, PayloadTooLarge, Unauthenticated
from registry.formats import xet as fmt
from registry.services import xet
from registry.services.context import Registry
from registry.services.xet_store import XorbStore

T = TypeVar("T")

router = APIRouter(route_class=HubRoute)
CAS_PREFIX = "/api/xet-cas"
DEDUPE_PREFIXES = ("default-merkledb", "default")
"""The spec names the dedupe query's prefix default-merkledb; hf_xet 1.x sends `default` (its
`data.default_prefix`, xet-core remote_client.rs `query_dedup_api`)."""


def _tokens(request: Request, settings: Settings) -> xet.CasTokens:
    state = request.app.state
    tokens = getattr(state, "xet_tokens", None)
    if tokens is None:
        tokens = state.xet_tokens = xet.CasTokens(state.secret_key)
    return tokens  # type: ignore[no-any-return]


def _token_answer(request: Request, token: str, exp: int) -> Response:
    cas = str(request.base_url).rstrip("/") + CAS_PREFIX
    headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)}
    return JSONResponse({"accessToken": token, "exp": exp, "casUrl": cas}, headers=headers)


@hub_route(router, "/xet-write-token/{revision:path}", prefix="/api/models")
async def xet_write_token(
    request: Request, repo: RepoIdDep, reg: RegistryDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    """A write-scoped CAS token for the repository, once the caller may write it (any revision:
    a commit always lands on the repository's latest version)."""
    tokens = _tokens(request, settings)
    token, exp = await anyio.to_thread.run_sync(xet.issue, reg, tokens, principal, repo, "write")
    return _token_answer(request, token, exp)


@hub_route(router, "/xet-read-token/{revision:path}", prefix="/api/models")
async def xet_read_token(
    request: Request, repo: RepoIdDep, reg: RegistryDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    """A read-scoped CAS token, once the caller may read the repository."""
    tokens = _tokens(request, settings)
    token, exp = await anyio.to_thread.run_sync(xet.issue, reg, tokens, principal, repo, "read")
    return _token_answer(request, token, exp)


def _cas_token(request: Request, settings: Settings, scope: str) -> xet.CasToken:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise Unauthenticated("the CAS API needs the token the xet token route issued (Bearer)")
    return _tokens(request, settings).check(value.strip(), scope)


def _length(request: Request, most: int, what: str) -> int:
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise BadRequest(f"Content-Length is required for {what} uploads")
    if len(declared) > 19 or int(declared) > most:
        raise PayloadTooLarge(f"a {what} of {declared} bytes; at most {most}")
    return int(declared)


async def _in_slot(
    request: Request, reg: Registry, token: xet.CasToken, size: int, work: Callable[[bytes, Principal], T]
) -> T:
    """`work(body, writer)` in one of the uploader's upload slots, once the token's writer may
    still write: the body is read and checked (a xorb's chunks hashed, a shard's files rebuilt)
    within the user's share of slots, not on the threads every other route shares."""
    principal = await anyio.to_thread.run_sync(xet.writer, reg, token)
    slots: UploadSlots = request.app.state.upload_slots
    reader = slots.reader(request.stream().__aiter__(), size)

    def read_all() -> bytes:
        parts, got = [], 0
        while got <= size and (chunk := reader.read(1024**2)):
            parts.append(chunk)
            got += len(chunk)
        if got != size:
            raise BadRequest(f"the body must be the {size} bytes Content-Length declares")
        return b"".join(parts)

    return await slots.run(token.uploader.user_id, lambda: work(read_all(), principal))


@router.get(CAS_PREFIX + "/v1/chunks/{prefix}/{chunk}", include_in_schema=False)
async def dedupe_query(
    request: Request, prefix: str, chunk: str, reg: RegistryDep, settings: SettingsDep
) -> Response:
    """The global dedupe query: a shard of the xorbs of files the token's user may read (or
    uploaded) that hold the chunk, their chunk hashes keyed; 404 when there are none."""
    token = _cas_token(request, settings, "read")
    if prefix not in DEDUPE_PREFIXES:
        raise BadRequest("the dedupe query's prefix is default-merkledb (or default)")
    try:
        fmt.from_hex(chunk)
    except fmt.XetFormatError as err:
        raise BadRequest(str(err)) from err
    answer = await anyio.to_thread.run_sync(xet.dedupe, reg, token, chunk)
    if answer is None:
        raise NotFound(f"chunk {chunk} is not tracked for deduplication")
    return Response(answer, media_type="application/octet-stream")


@router.post(CAS_PREFIX + "/v1/xorbs/{prefix}/{xorb}", include_in_schema=False)
async def upload_xorb(
    request: Request, prefix: str, xorb: str, reg: RegistryDep, settings: SettingsDep
) -> dict[str, bool]:
    """A serialized xorb, verified against its hash (its chunks rebuilt and hashed) before it is kept."""
    token = _cas_token(request, settings, "write")
    if prefix != "default":
        raise BadRequest("the xorb prefix is default")
    size = _length(request, fmt.MAX_XORB_BYTES, "xorb")
    inserted = await _in_slot(request, reg, token, size, lambda data, _: XorbStore(reg).put(xorb, data))
    return {"was_inserted": inserted}


@router.post(CAS_PREFIX + "/v1/shards", include_in_schema=False)
async def upload_shard(request: Request, reg: RegistryDep, settings: SettingsDep) -> dict[str, int]:
    """A shard: its files checked against the stored xorbs and stored as sha256 blobs, which the
    commit that follows names."""
    token = _cas_token(request, settings, "write")
    size = _length(request, fmt.MAX_SHARD_BYTES, "shard")
    tmp = settings.home / "xet" / "tmp"  # files being rebuilt: this replica's scratch only
    result = await _in_slot(
        request,
        reg,
        token,
        size,
        lambda data, writer: xet.put_shard(reg, writer, data, settings.max_push_bytes, tmp),
    )
    return {"result": result}
