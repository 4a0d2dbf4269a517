"""HttpClient: the same interface against a server's /v1 API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from registry.client.base import TransferProgress
from registry.entities import (
    AliasInfo,
    BaseInfo,
    BaseRegistration,
    FitQuery,
    FitResult,
    Page,
    PushRequest,
    PushResult,
    RepoInfo,
    VersionFilter,
    VersionInfo,
    VersionSummary,
)
from registry.errors import RegistryError, ServerUnavailable, error_from_problem
from registry.jobspec import JobInfo, JobRequest
from registry.refs import parse_ref, parse_repo
from registry.services.blobs import upload_blob
from storage import BlobStore
from storage.base import CHUNK_SIZE
from storage.local import LocalBlobStore

TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def raise_for_problem(resp: httpx.Response) -> None:
    """Map an error response (problem+json) to the RegistryError subclass its code names."""
    if resp.is_success:
        return
    try:
        body: dict[str, Any] = resp.json()
    except ValueError:
        body = {"detail": resp.text[:500] or resp.reason_phrase}
    raise error_from_problem(body if isinstance(body, dict) else {}, resp.status_code)


def user_header(user: str) -> str:
    """The X-Adapters-User value: the name percent-encoded as UTF-8, so that any name travels in an
    ASCII header (`get_principal` decodes it). A name taken from a non-UTF-8 environment (lone
    surrogates from surrogateescape) travels as its original bytes."""
    try:
        return quote(user, safe="", errors="surrogateescape")
    except UnicodeEncodeError:
        return quote(user, safe="", errors="backslashreplace")


class HttpClient:
    def __init__(self, base_url: str, user: str, cache_dir: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"X-Adapters-User": user_header(user)},
            timeout=TIMEOUT,
            follow_redirects=True,
        )
        self.cache: BlobStore = LocalBlobStore(cache_dir)

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, url, **kw)
        except httpx.TransportError as err:
            raise ServerUnavailable(f"cannot reach {self.base_url}: {err}") from err
        raise_for_problem(resp)
        return resp

    def missing_blobs(self, digests: list[str]) -> list[str]:
        resp = self._request("POST", "/v1/blobs/missing", json={"digests": digests})
        return list(resp.json()["missing"])

    def upload_blob(self, path: Path, digest: str, size: int, progress: TransferProgress | None) -> None:
        def body() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    if progress:
                        progress.advance(len(chunk))
                    yield chunk

        self._request(
            "PUT",
            f"/v1/blobs/{digest}",
            content=body(),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )

    def commit(self, repo: str, request: PushRequest) -> PushResult:
        r = parse_repo(repo)
        resp = self._request(
            "POST", f"/v1/repos/{r.namespace}/{r.name}/versions", json=request.model_dump(mode="json")
        )
        return PushResult.model_validate(resp.json())

    def fetch_blob(self, digest: str, size: int, progress: TransferProgress | None) -> None:
        if self.cache.stat(digest) is not None:
            return
        from registry.client.transfer import IterReader

        try:
            with self.http.stream("GET", f"/v1/blobs/{digest}") as resp:
                if not resp.is_success:
                    resp.read()
                    raise_for_problem(resp)
                upload_blob(
                    self.cache,
                    IterReader(resp.iter_bytes(CHUNK_SIZE)),
                    digest,
                    size,
                    progress.advance if progress else None,
                )
        except httpx.TransportError as err:
            raise ServerUnavailable(f"download of {digest} failed: {err}") from err

    def resolve(self, ref: str) -> VersionInfo:
        parse_ref(ref)  # fail fast, with the same message as embedded mode
        resp = self._request("GET", "/v1/resolve", params={"ref": ref})
        return VersionInfo.model_validate(resp.json())

    def list_versions(
        self, flt: VersionFilter, limit: int = 50, cursor: str | None = None
    ) -> Page[VersionSummary]:
        params: dict[str, Any] = {k: v for k, v in flt.model_dump().items() if v not in (None, False)}
        params.update(limit=limit, **({"cursor": cursor} if cursor else {}))
        resp = self._request("GET", "/v1/versions", params=params)
        return Page[VersionSummary].model_validate(resp.json())

    def list_repos(self, limit: int = 50, cursor: str | None = None) -> Page[RepoInfo]:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = self._request("GET", "/v1/repos", params=params)
        return Page[RepoInfo].model_validate(resp.json())

    def set_alias(self, ref: str, alias: str) -> AliasInfo:
        parsed = parse_ref(ref)
        repo = parsed.repo
        resp = self._request(
            "PUT", f"/v1/repos/{repo.namespace}/{repo.name}/aliases/{quote(alias)}", json={"ref": str(parsed)}
        )
        return AliasInfo.model_validate(resp.json())

    def delete_alias(self, repo: str, alias: str) -> AliasInfo:
        r = parse_repo(repo)
        resp = self._request("DELETE", f"/v1/repos/{r.namespace}/{r.name}/aliases/{quote(alias)}")
        return AliasInfo.model_validate(resp.json())

    def register_base(self, data: BaseRegistration) -> BaseInfo:
        return BaseInfo.model_validate(
            self._request("POST", "/v1/bases", json=data.model_dump(mode="json")).json()
        )

    def get_base(self, ref: str) -> BaseInfo:
        return BaseInfo.model_validate(self._request("GET", "/v1/bases/lookup", params={"ref": ref}).json())

    def list_bases(self) -> list[BaseInfo]:
        return [BaseInfo.model_validate(b) for b in self._request("GET", "/v1/bases").json()]

    def fit(self, query: FitQuery) -> FitResult:
        return FitResult.model_validate(
            self._request("POST", "/v1/fit", json=query.model_dump(mode="json")).json()
        )

    def submit_job(self, request: JobRequest) -> JobInfo:
        return JobInfo.model_validate(
            self._request("POST", "/v1/jobs", json=request.model_dump(mode="json")).json()
        )

    def get_job(self, job_id: int) -> JobInfo:
        return JobInfo.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[JobInfo]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        return [JobInfo.model_validate(j) for j in self._request("GET", "/v1/jobs", params=params).json()]

    def cancel_job(self, job_id: int) -> JobInfo:
        return JobInfo.model_validate(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def start_worker(self) -> None:
        """The server's workers run the jobs."""

    def close(self) -> None:
        self.http.close()


__all__ = ["HttpClient", "RegistryError", "raise_for_problem"]
