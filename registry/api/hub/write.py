"""The Hub protocol's write path: `create_repo`, `preupload`, the LFS batch API (basic and
multipart transfers to one-time upload URLs) and `commit`, as huggingface_hub calls them with
HF_HUB_DISABLE_XET=1 (Xet uploads: registry/api/hub/xet). A thin translation onto `registry.services.hub_write` / `hub_lfs`.

Every call but the uploads to signed URLs acts as the caller's token (HF_TOKEN, sent as Bearer) and
needs write on the repository's namespace. The upload URLs carry no credentials (the client sends
none there): they name, signed, the user and token the batch call was made with (`Uploader`)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from registry.access.checks import require_writer
from registry.access.principal import Principal
from registry.api.bodies import INLINE_PARSE_BYTES, check_size
from registry.api.deps import PrincipalDep, RegistryDep, SettingsDep
from registry.api.hub.common import RepoIdDep, hub_route
from registry.api.hub.errors import HubRoute, hub_error_response
from registry.api.uploads import UploadSlots
from registry.bounds import MAX_VERSION_FILES, loads_strict
from registry.config import Settings
from registry.errors import (
    BadRequest,
    Conflict,
    PushTooLarge,
    RegistryError,
    UploadUrlRefused,
    ValidationFailed,
)
from registry.services import hub, hub_lfs, hub_write
from registry.services.context import Registry
from registry.services.hub_lfs import PartStore, Signer, Uploader
from storage.base import Readable

T = TypeVar("T")
router = APIRouter(route_class=HubRoute)
UPLOAD_PREFIX = "/api/lfs-upload"
"""Where one-time upload URLs point (PUT bodies there are capped by ADAPTERS_MAX_PUSH_BYTES, not
the request cap: registry/api/guard.py)."""
LFS_JSON = "application/vnd.git-lfs+json"


def _signer(request: Request, settings: Settings) -> Signer:
    state = request.app.state
    signer = getattr(state, "hub_signer", None)
    if signer is None:
        signer = state.hub_signer = Signer(state.secret_key, settings.hub_upload_url_ttl_s)
    return signer  # type: ignore[no-any-return]


def _parts(reg: Registry) -> PartStore:
    """Staged in the blob store every replica shares: a part may reach any replica."""
    return PartStore.of(reg.store)


def read_json(raw: bytes, where: str) -> Any:
    """The one reader of every Hub write body and of each line of a commit: strict UTF-8 JSON, no
    NaN or Infinity, nesting capped at MAX_JSON_DEPTH and checked without recursion (a body nested
    100k deep was a RecursionError, 500), anything else a 400 `bad_request` naming `where`. The
    text inside is checked where it is stored (a commit's summary: 422 like any message)."""
    return loads_strict(raw, where, BadRequest, storable=False)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    check_size(raw)
    if len(raw) <= INLINE_PARSE_BYTES:  # the rule of /v1's bodies (registry/api/bodies.py)
        body = read_json(raw, "the body")
    else:
        body = await anyio.to_thread.run_sync(read_json, raw, "the body")
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


@router.post("/api/repos/create", include_in_schema=False)
async def create_repo(request: Request, reg: RegistryDep, principal: PrincipalDep) -> Response:
    """`HfApi.create_repo`: records an empty adapter repository; 409 when it exists (the client's
    exist_ok=True accepts that)."""
    repo_id = _named_repo(await _json(request), "created")
    url = f"{str(request.base_url).rstrip('/')}/{repo_id}"
    created = await anyio.to_thread.run_sync(hub_write.create_repo, reg, repo_id, principal)
    if created:
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})
    # The Hub's answer for an existing repository: 409 with its url (create_repo(exist_ok=True) reads it).
    answer = hub_error_response(request, Conflict(f"You already created this model repo: {repo_id}"))
    return JSONResponse(
        {"error": f"You already created this model repo: {repo_id}", "url": url},
        status_code=409,
        headers={k: v for k, v in answer.headers.items() if k.startswith("x-error")},
    )


@router.delete("/api/repos/delete", include_in_schema=False)
async def delete_repo(request: Request, reg: RegistryDep, principal: PrincipalDep) -> dict[str, Any]:
    """`HfApi.delete_repo`: `/v1`'s repository delete (write on the namespace; every version and
    alias, numbers never given again, audited), empty repositories included; RepoNotFound (which
    `missing_ok=True` accepts) when there is none the caller may read."""
    repo_id = _named_repo(await _json(request), "deleted")
    await anyio.to_thread.run_sync(hub_write.delete_repo, reg, repo_id, principal)
    return {}


def _named_repo(body: dict[str, Any], verb: str) -> str:
    """The repository id of a create or delete body (`name`, `organization`, `type`)."""
    if body.get("type") not in (None, "model"):
        raise BadRequest(f"only model repositories (adapters) can be {verb} here", field="type")
    name, org = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not (org is None or isinstance(org, str)):
        raise BadRequest("name (and organization) must be strings", field="name")
    return f"{org}/{name}" if org else name


@router.post("/api/validate-yaml", include_in_schema=False)
def validate_yaml() -> dict[str, Any]:
    """`create_commit` asks before committing a README.md; its metadata is not checked here."""
    return {"errors": [], "warnings": []}


@hub_route(router, "/preupload/{revision:path}", prefix="/api/models", methods=("POST",))
async def preupload(
    request: Request, revision: str, repo: RepoIdDep, reg: RegistryDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Small text files come inline in the commit ("regular"), the rest through LFS."""
    body = await _json(request)
    files = body.get("files")
    if not isinstance(files, list) or len(files) > MAX_VERSION_FILES:
        raise BadRequest(f"files must be a list of at most {MAX_VERSION_FILES} entries", field="files")
    asked = []
    for f in files:
        try:
            asked.append((str(f["path"]), int(f["size"]), base64.b64decode(f.get("sample") or "")[:512]))
        except (KeyError, TypeError, ValueError, binascii.Error) as err:
            raise BadRequest(f"invalid preupload entry: {err}", field="files") from err
    modes = await anyio.to_thread.run_sync(hub_write.upload_modes, reg, repo, revision, principal, asked)
    return {
        "files": [
            {"path": m.path, "uploadMode": m.mode, "shouldIgnore": m.ignore, "oid": m.oid} for m in modes
        ],
        "commitOid": None,
    }


@hub_route(router, ".git/info/lfs/objects/batch", methods=("POST",))
async def lfs_batch(
    request: Request,
    repo: RepoIdDep,
    reg: RegistryDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    """The Git LFS batch API (upload only): per object, nothing to do, a single PUT, or parts."""
    body = await _json(request)
    if body.get("operation") != "upload":
        raise BadRequest("only the upload operation is served (downloads: /resolve)", field="operation")
    transfers = body.get("transfers") or ["basic"]
    raw = body.get("objects")
    if not isinstance(raw, list) or not isinstance(transfers, list):
        raise BadRequest("objects and transfers must be lists", field="objects")
    hub_lfs.check_batch(raw)  # counted before any object is read
    try:
        objects = [(str(o["oid"]), int(o["size"])) for o in raw]
    except (KeyError, TypeError, ValueError) as err:
        raise BadRequest(f"invalid LFS object: {err}", field="objects") from err
    base = str(request.base_url).rstrip("/")
    signer = _signer(request, settings)
    # Looking up, signing and serialising run on a thread: the event loop only moves bytes.
    answer = await anyio.to_thread.run_sync(
        lambda: _batch_answer(
            reg, repo, principal, objects, [str(t) for t in transfers], settings, signer, base
        )
    )
    return Response(answer, media_type=LFS_JSON)


def _batch_answer(
    reg: Registry,
    repo: str,
    principal: Principal,
    objects: list[tuple[str, int]],
    transfers: list[str],
    settings: Settings,
    signer: Signer,
    base: str,
) -> bytes:
    """The batch answer's bytes. A multipart object's part URLs share one signature (over the
    upload, its part size and "parts"): the part number is checked against the upload's size, so
    an answer costs two HMACs per object, not one per part."""
    transfer, planned = hub_lfs.plan_upload(
        reg, repo, principal, objects, transfers, settings.max_push_bytes, settings.hub_multipart_chunk_bytes
    )
    who = Uploader.of(principal)
    answer = []
    for o in planned:
        item: dict[str, Any] = {"oid": o.oid, "size": o.size}
        if o.error:
            item["error"] = {"code": o.error_code, "message": o.error}
        elif o.action == "basic":
            exp = signer.expiry()
            sig = signer.sign(exp, o.oid, str(o.size), *who.fields)
            href = f"{base}{UPLOAD_PREFIX}/{o.oid}/{o.size}?expires={exp}&{who.query}&sig={sig}"
            item.update(
                authenticated=True,
                actions={"upload": {"href": href, "expires_in": settings.hub_upload_url_ttl_s}},
            )
        elif o.action == "multipart":
            exp = signer.expiry()
            upload_id = hub_lfs.new_upload_id()
            upload = f"{base}{UPLOAD_PREFIX}/{o.oid}/{o.size}/{upload_id}/{o.chunk}"
            signed = (exp, o.oid, str(o.size), *who.fields, upload_id, str(o.chunk))
            query = f"?expires={exp}&{who.query}&sig={signer.sign(*signed, 'parts')}"
            header: dict[str, str] = {"chunk_size": str(o.chunk)}
            header.update((str(n), f"{upload}/{n}{query}") for n in range(1, o.parts + 1))
            href = f"{upload}?expires={exp}&{who.query}&sig={signer.sign(*signed, 'complete')}"
            item.update(authenticated=True, actions={"upload": {"href": href, "header": header}})
        answer.append(item)
    return json.dumps({"transfer": transfer, "objects": answer, "hash_algo": "sha256"}).encode()


def _declared_length(request: Request) -> int:
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise BadRequest("Content-Length is required for uploads")
    return int(declared)


async def _stream(request: Request, who: Uploader, size: int, func: Callable[[Readable], T]) -> T:
    """`func(reader)` in one of `who`'s upload slots, the body streamed in as /v1/blobs PUT does."""
    slots: UploadSlots = request.app.state.upload_slots
    reader = slots.reader(request.stream().__aiter__(), size)
    return await slots.run(who.user_id, lambda: func(reader))


def _uploader(user: str, token: str) -> Uploader:
    """The uploader a URL names (its signature already checked: these are the issued values)."""
    try:
        return Uploader(int(user) if user else None, int(token) if token else None)
    except ValueError as err:  # pragma: no cover - the signature covers them
        raise UploadUrlRefused("the upload URL is not one this registry issued") from err


@router.put(UPLOAD_PREFIX + "/{oid}/{size}", include_in_schema=False)
async def lfs_put(
    request: Request,
    oid: str,
    size: int,
    expires: int,
    sig: str,
    reg: RegistryDep,
    settings: SettingsDep,
    user: str = "",
    token: str = "",
) -> Response:
    """A basic transfer's single PUT, to the URL the batch call issued (no auth header: it acts as
    the user and token the URL names, whoever sends it)."""
    _signer(request, settings).check(sig, expires, oid, str(size), user, token)
    who = _uploader(user, token)
    hub_lfs.check_size(size, settings.max_push_bytes)
    if _declared_length(request) != size:
        raise ValidationFailed(f"the body must be the object's {size} bytes", field="Content-Length")
    await _stream(request, who, size, lambda r: hub_lfs.put_object(reg, who.principal(reg), r, oid, size))
    return Response(status_code=200)


@router.put(UPLOAD_PREFIX + "/{oid}/{size}/{upload_id}/{chunk}/{number}", include_in_schema=False)
async def lfs_put_part(
    request: Request,
    oid: str,
    size: int,
    upload_id: str,
    chunk: int,
    number: int,
    expires: int,
    sig: str,
    reg: RegistryDep,
    settings: SettingsDep,
    user: str = "",
    token: str = "",
) -> Response:
    """One part of a multipart transfer; its ETag (the part's sha256) goes into the completion.
    Each part acts as the uploader the URL names, checked again: a revoked token's upload stops at
    its next part, not at the completion."""
    _signer(request, settings).check(
        sig, expires, oid, str(size), user, token, upload_id, str(chunk), "parts"
    )
    who = _uploader(user, token)
    hub_lfs.check_size(size, settings.max_push_bytes)
    length = hub_lfs.part_length(size, chunk, number)
    if _declared_length(request) != length:
        raise ValidationFailed(f"part {number} must be {length} bytes", field="Content-Length")
    parts = _parts(reg)

    def put(reader: Readable) -> str:
        require_writer(who.principal(reg))  # before a byte of the part is stored
        return parts.put_part(upload_id, number, reader, length)

    etag = await _stream(request, who, length, put)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


@router.post(UPLOAD_PREFIX + "/{oid}/{size}/{upload_id}/{chunk}", include_in_schema=False)
async def lfs_complete(
    request: Request,
    oid: str,
    size: int,
    upload_id: str,
    chunk: int,
    expires: int,
    sig: str,
    reg: RegistryDep,
    settings: SettingsDep,
    user: str = "",
    token: str = "",
) -> dict[str, Any]:
    """The completion call: the parts, in order, become the blob (verified against the oid), as
    the user the URL names (their proof of possession recorded)."""
    _signer(request, settings).check(
        sig, expires, oid, str(size), user, token, upload_id, str(chunk), "complete"
    )
    who = _uploader(user, token)
    body = await _json(request)
    raw = body.get("parts")
    if body.get("oid") != oid or not isinstance(raw, list):
        raise BadRequest("the completion names another object, or no parts", field="parts")
    try:
        ordered = sorted((int(p["partNumber"]), str(p["etag"])) for p in raw)
    except (KeyError, TypeError, ValueError) as err:
        raise BadRequest(f"invalid part: {err}", field="parts") from err
    expected = -(-size // chunk)
    if [n for n, _ in ordered] != list(range(1, expected + 1)):
        raise BadRequest(f"the completion must list parts 1..{expected}", field="parts")
    parts = _parts(reg)
    slots: UploadSlots = request.app.state.upload_slots
    info = await slots.run(
        who.user_id,
        lambda: parts.complete(reg, who.principal(reg), upload_id, oid, size, [e for _, e in ordered], chunk),
    )
    return {"oid": oid, "size": info.size}


@hub_route(router, "/commit/{revision:path}", prefix="/api/models", methods=("POST",))
async def commit(
    request: Request, revision: str, repo: RepoIdDep, reg: RegistryDep, principal: PrincipalDep
) -> dict[str, Any]:
    """`create_commit` (NDJSON): header, then file / lfsFile / deletedFile / deletedFolder lines.
    The summary (and description) becomes the version's message."""
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        raise BadRequest("pull requests are not supported: commit to main", field="create_pr")
    body = await request.body()

    def parse_and_commit() -> hub_write.CommitDone:
        # On a thread (decoding thousands of inline files is CPU work), and only once the caller
        # may write: a stranger's body is not read.
        hub.check_write(reg, principal, repo)
        return hub_write.commit(reg, repo, revision, parse_commit(body), principal)

    done = await anyio.to_thread.run_sync(parse_and_commit)
    base = str(request.base_url).rstrip("/")
    return {
        "success": True,
        "commitOid": done.commit,
        "commitUrl": f"{base}/{done.repo}/commit/{done.commit}",
        "hookOutput": "",
        "version": done.version,
        "created": done.created,
    }


MAX_COMMIT_LINES = 1 + 2 * MAX_VERSION_FILES
"""A header, at most MAX_VERSION_FILES added files, and deletions of at most the parent's files."""


def parse_commit(body: bytes) -> hub_write.HubCommit:
    """The NDJSON commit payload huggingface_hub's `_prepare_commit_payload` writes, each line
    through `read_json`. Counted before it is read: a body of more lines than a commit can have is
    refused before its first line is parsed, and one file more than a version holds before that
    file is decoded (a commit of 150k inline files was decoded and checked in full first: 8.6 s).

    Raises:
        PushTooLarge: more files (or lines) than one version can hold.
        BadRequest: a line that is not one of huggingface_hub's operations.
    """
    lines = body.count(b"\n") + (not body.endswith(b"\n"))
    if lines > MAX_COMMIT_LINES:
        raise _too_many(f"{lines} lines")
    out = hub_write.HubCommit()
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        item = read_json(line, f"commit line {number}")
        try:
            _read_line(out, item)
        except RegistryError:
            raise
        except (KeyError, TypeError, ValueError, binascii.Error) as err:
            raise BadRequest(f"commit line {number}: {err}") from err
    return out


def _too_many(what: str) -> PushTooLarge:
    return PushTooLarge(
        f"a commit of {what}: a version holds at most {MAX_VERSION_FILES} files; commit fewer",
        limit=MAX_VERSION_FILES,
    )


def _read_line(out: hub_write.HubCommit, item: Any) -> None:
    key, value = item["key"], item["value"]
    if not isinstance(value, dict):
        raise TypeError("value must be an object")
    if key == "header":
        out.summary = str(value.get("summary") or "")
        out.description = str(value.get("description") or "")
        parent = value.get("parentCommit")
        out.parent = str(parent) if parent else None
        return
    path = str(value["path"])
    if key in ("file", "lfsFile"):
        if path in out.inline or path in out.lfs:
            raise ValueError(f"{path!r} is added twice")
        if len(out.inline) + len(out.lfs) == MAX_VERSION_FILES:
            raise _too_many(f"more than {MAX_VERSION_FILES} files")  # before this one is decoded
    if key == "file":
        if value.get("encoding", "base64") != "base64":
            raise ValueError("inline files must be base64")
        out.inline[path] = base64.b64decode(str(value["content"]), validate=True)
    elif key == "lfsFile":
        if value.get("algo", "sha256") != "sha256":
            raise ValueError("LFS objects are sha256")
        size = value.get("size")
        out.lfs[path] = (f"sha256:{value['oid']}", None if size is None else int(size))
    elif key == "deletedFile":
        out.deleted_files.append(path)
    elif key == "deletedFolder":
        out.deleted_folders.append(path)
    else:
        raise ValueError(f"unknown operation {key!r}")
