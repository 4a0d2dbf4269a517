"""Repository metadata as the Hub serves it: model info, file trees, refs, and who the caller is."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Query, Request, Response

from registry.api.deps import PrincipalDep, RegistryDep
from registry.api.hub.common import RepoIdDep, hub_route, iso, raw_segments, revision_and_path
from registry.api.hub.errors import HubRoute
from registry.errors import BadRequest, NotFound, RepoNotFound, RevisionNotFound, Unauthenticated
from registry.services import hub, hub_discovery
from registry.services.hub import MAIN, HubFile, HubRef, HubRevision, TreeEntry

router = APIRouter(route_class=HubRoute)
fallback_router = APIRouter(route_class=HubRoute)
"""Included after every Hub route: any other /api/models/... path answers the Hub's way."""
TREE_PAGE = 1000
"""Entries per tree page, as the Hub pages (50 with expand)."""


@hub_route(router, "", prefix="/api/models")
def model_info(repo: RepoIdDep, reg: RegistryDep, principal: PrincipalDep) -> dict[str, Any]:
    """`HfApi.model_info`: the repository at `main`. Query parameters (expand, blobs,
    securityStatus) are accepted and ignored: everything is always there."""
    return _info(*hub_discovery.with_discovery(reg, hub.resolve_revision(reg, repo, MAIN, principal)))


@hub_route(router, "/revision/{revision:path}", prefix="/api/models")
def model_info_at(
    revision: str, repo: RepoIdDep, reg: RegistryDep, principal: PrincipalDep
) -> dict[str, Any]:
    """The revision is the rest of the path: `refs%2Fheads%2Fmain` arrives decoded, slashes and all."""
    return _info(*hub_discovery.with_discovery(reg, hub.resolve_revision(reg, repo, revision, principal)))


@hub_route(router, "/tree/{revision}/{path:path}", prefix="/api/models")
@hub_route(router, "/tree/{revision}", prefix="/api/models")
def tree(
    request: Request,
    response: Response,
    repo: RepoIdDep,
    reg: RegistryDep,
    principal: PrincipalDep,
    recursive: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=TREE_PAGE)] = TREE_PAGE,
) -> list[dict[str, Any]]:
    """`HfApi.list_repo_tree`: one folder (or, with recursive, everything below it), paginated
    with a `Link: <...>; rel="next"` header as the Hub does. The revision is one segment of the
    raw path (`refs%2Fheads%2Fmain`), the folder the rest."""
    revision, path = revision_and_path(request, "tree", "/api/models")
    rev = hub.resolve_revision(reg, repo, revision, principal)
    deep = (recursive or "").lower() in ("1", "true", "yes")
    entries = hub.tree(rev, path, deep)
    page, more = hub.page_after(entries, _decode_cursor(cursor), limit)
    if more:
        url = request.url.include_query_params(cursor=_encode_cursor(page[-1].path))
        response.headers["Link"] = f'<{url}>; rel="next"'
    return [tree_entry(e) for e in page]


@hub_route(router, "/refs", prefix="/api/models")
def refs(repo: RepoIdDep, reg: RegistryDep, principal: PrincipalDep) -> dict[str, Any]:
    """`HfApi.list_repo_refs`: `main` and every alias as branches, version numbers as tags."""
    found = hub.list_refs(reg, repo, principal)
    return {
        "branches": [_ref(r) for r in found.branches],
        "tags": [_ref(r) for r in found.tags],
        "converts": [],
        "pullRequests": [],
    }


@router.get("/api/whoami-v2", include_in_schema=False)
def whoami(principal: PrincipalDep) -> dict[str, Any]:
    """`HfApi.whoami`: the token's user and what the token may do (the Hub answers 401 without
    a token, and so does this)."""
    if principal.is_anonymous:
        raise Unauthenticated("whoami needs a token")
    role = "read" if principal.read_only else "write"
    return {
        "type": "user",
        "id": principal.name,
        "name": principal.name,
        "fullname": principal.name,
        "email": None,
        "emailVerified": False,
        "isPro": False,
        "canPay": False,
        "avatarUrl": "",
        # The namespaces the user holds a grant on, as the Hub lists a user's organizations.
        "orgs": [{"name": ns, "type": "org"} for ns in sorted(principal.grants)],
        "auth": {
            "type": "access_token",
            "accessToken": {"displayName": principal.name, "role": role},
        },
    }


_REVISION_MARKERS = frozenset({"revision", "tree", "resolve", "preupload", "commit", "commits", "paths-info"})


@fallback_router.api_route("/api/models/{rest:path}", methods=["GET", "HEAD"], include_in_schema=False)
def unknown_model_path(request: Request, reg: RegistryDep, principal: PrincipalDep) -> None:
    """No Hub route matched: RepoNotFound when no repository the reader may read is named by the
    path's first segments, else RevisionNotFound (a revision route in a shape not served) or
    EntryNotFound, never a bare 404 that huggingface_hub cannot tell apart."""
    segments = [unquote(s) for s in raw_segments(request)[3:]]  # after '', 'api', 'models'
    for n in (2, 1):
        if len(segments) < n or not all(segments[:n]):
            continue
        repo = "/".join(segments[:n])
        try:
            hub.list_refs(reg, repo, principal)
        except RepoNotFound:
            continue
        rest = segments[n:]
        if rest and rest[0] in _REVISION_MARKERS:
            revision = rest[1] if len(rest) > 1 else ""
            raise RevisionNotFound(f"{repo} has no revision {revision!r}", repo=repo, revision=revision)
        raise NotFound(f"no Hub endpoint /api/models/{'/'.join(segments)[:200]}", repo=repo)
    repo = "/".join(segments[:2])
    raise RepoNotFound(f"repository {repo[:200]!r} not found", repo=repo[:200])


def _info(rev: HubRevision, downloads: int) -> dict[str, Any]:
    namespace = rev.repo_id.split("/")[0] if "/" in rev.repo_id else None
    info: dict[str, Any] = {
        "_id": rev.commit,
        "id": rev.repo_id,
        "modelId": rev.repo_id,
        "author": namespace,
        "sha": rev.commit,
        "lastModified": iso(rev.last_modified),
        "createdAt": iso(rev.created_at),
        "private": rev.private,
        "gated": False,
        "disabled": False,
        "downloads": downloads,
        "downloadsAllTime": downloads,
        "likes": 0,
        "library_name": rev.library_name,
        "tags": rev.tags,
        "cardData": rev.card_data,
        "config": rev.config,
        "siblings": [_sibling(f) for f in rev.files],
        "spaces": [],
        "usedStorage": sum(f.size for f in rev.files),
    }
    if rev.pipeline_tag:
        info["pipeline_tag"] = rev.pipeline_tag
    return info


def _lfs(f: HubFile) -> dict[str, Any]:
    return {"oid": f.sha256, "sha256": f.sha256, "size": f.size, "pointerSize": len(f.lfs_pointer)}


def _sibling(f: HubFile) -> dict[str, Any]:
    lfs = _lfs(f)
    del lfs["oid"]
    return {"rfilename": f.path, "size": f.size, "blobId": f.git_oid, "lfs": lfs}


def tree_entry(e: TreeEntry) -> dict[str, Any]:
    if e.file is None:
        return {"type": "directory", "path": e.path, "oid": e.oid, "size": 0}
    lfs = _lfs(e.file)
    del lfs["sha256"]
    return {"type": "file", "path": e.path, "size": e.file.size, "oid": e.oid, "lfs": lfs}


def _ref(r: HubRef) -> dict[str, str]:
    return {"name": r.name, "ref": r.ref, "targetCommit": r.commit}


def _encode_cursor(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError) as err:
        raise BadRequest("invalid tree cursor", field="cursor") from err
