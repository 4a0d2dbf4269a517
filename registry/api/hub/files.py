"""`/{repo}/resolve/{revision}/{path}`: a file of a revision, with the headers huggingface_hub
reads (`get_hf_file_metadata`): X-Repo-Commit, X-Linked-Etag / ETag (the sha256), X-Linked-Size.

No `X-Xet-*` header is ever sent, so clients with hf_xet installed download over plain HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from registry.api.blob_response import blob_response
from registry.api.deps import PrincipalDep, RegistryDep, SettingsDep
from registry.api.hub.common import RepoIdDep, hub_route, revision_and_path
from registry.api.hub.errors import HubRoute
from registry.services import hub_discovery, hub_files

router = APIRouter(route_class=HubRoute)
IMMUTABLE = "public, max-age=31536000, immutable"


@hub_route(router, "/resolve/{revision}/{path:path}", methods=("GET", "HEAD"))
def resolve_file(
    request: Request,
    repo: RepoIdDep,
    reg: RegistryDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """HEAD: the metadata; GET: the bytes (`Range` gives 206). With presigned downloads the
    answer is a 302 to the store that carries the same metadata headers (the client reads them
    from the redirect and does not follow it on HEAD). The revision is one segment of the raw
    path: huggingface_hub sends `refs/heads/main` as `refs%2Fheads%2Fmain`."""
    revision, path = revision_and_path(request, "resolve")
    rev = hub_files.resolve_file_revision(reg, repo, revision, principal)  # one statement, warm
    f = rev.file(path)
    hub_discovery.count_download(reg, rev, path, request.method)  # a dict increment, no I/O
    headers = {
        "X-Repo-Commit": rev.commit,
        "X-Linked-Etag": f'"{f.sha256}"',
        "ETag": f'"{f.sha256}"',
        "X-Linked-Size": str(f.size),
        "Accept-Ranges": "bytes",
    }
    if revision == rev.commit:
        headers["Cache-Control"] = IMMUTABLE  # a commit id names the same bytes forever
    if settings.s3_presign_downloads:
        url = reg.store.url_for(f.digest)
        if url:
            return Response(status_code=302, headers={**headers, "Location": url})
    if request.method == "HEAD":
        return Response(headers={**headers, "Content-Length": str(f.size)})
    return blob_response(reg.store, f.digest, f.size, range_header, headers)
