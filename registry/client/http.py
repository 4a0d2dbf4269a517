"""HttpClient: the same interface against a server's /v1 API."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from registry.access.entities import GrantInfo, NamespaceInfo, TokenInfo, UserInfo, WhoAmI
from registry.client.interface import TransferProgress
from registry.client.ref_cache import RefCache
from registry.client.resolved import Resolved, StoredFile
from registry.client.transfer import served_files
from registry.entities import (
    AliasInfo,
    AuditEventInfo,
    AuditFilter,
    BaseInfo,
    BaseLayout,
    BaseRegistration,
    Comparison,
    DeleteResult,
    EvalHistory,
    EvalInput,
    FitQuery,
    FitResult,
    FsckReport,
    GcReport,
    Leaderboard,
    LeaderboardQuery,
    LineageGraph,
    MetricCount,
    MetricsQuery,
    NamespacePolicy,
    Page,
    ParetoQuery,
    ParetoResult,
    PolicyChange,
    PushRequest,
    PushResult,
    RepoInfo,
    SignatureInfo,
    SignRequest,
    VersionFilter,
    VersionInfo,
    VersionSummary,
)
from registry.errors import (
    DigestMismatch,
    RegistryError,
    ServerUnavailable,
    SizeMismatch,
    error_from_problem,
    from_storage_error,
)
from registry.jobspec import JobInfo, JobRequest
from registry.refs import parse_ref, parse_repo
from storage import BlobInfo, BlobStore, check_digest, sha256_file
from storage.base import CHUNK_SIZE, digest_hex, write_verified
from storage.base import InvalidDigest as InvalidStoreDigest
from storage.local import LocalBlobStore, link_or_copy

TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def _range_start(resp: httpx.Response) -> int | None:
    """The first byte a 206 carries (`Content-Range: bytes START-END/SIZE`)."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", resp.headers.get("content-range", "").strip())
    return int(m[1]) if m else None


class _StreamHash:
    """sha256 of a download's bytes as they are written, valid only while the partial file holds
    exactly the bytes it saw (from byte 0, in this process): the file need not be read again."""

    def __init__(self, valid: bool) -> None:
        self._hash = hashlib.sha256() if valid else None
        self.length = 0

    def restart(self) -> None:
        """The partial file starts over at byte 0 (a first download, or a server ignoring Range)."""
        self._hash = hashlib.sha256()
        self.length = 0

    def update(self, chunk: bytes) -> None:
        if self._hash is not None:
            self._hash.update(chunk)
            self.length += len(chunk)

    def result(self, have: int) -> BlobInfo | None:
        """The hash of the `have` bytes in the partial file, or None when it must be read again."""
        if self._hash is None or self.length != have:
            return None
        return BlobInfo("sha256:" + self._hash.hexdigest(), have)


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
    in_process = False
    """A server's workers run jobs, on their machines: a path on this one means nothing to them."""
    cache_is_store = False
    """Its cache is its own, never the server's blobs."""

    def __init__(self, base_url: str, user: str, cache_dir: Path, token: str | None = None) -> None:
        """`token`: sent as `Authorization: Bearer` (default: $ADAPTERS_TOKEN). Never logged."""
        self.base_url = base_url.rstrip("/")
        headers = {"X-Adapters-User": user_header(user)}
        token = token if token is not None else os.environ.get("ADAPTERS_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=TIMEOUT,
            follow_redirects=True,
        )
        self._local = LocalBlobStore(cache_dir)
        self.cache: BlobStore = self._local
        # Keyed by the token too: an entry unlocks the shared blob cache without asking the server,
        # so one made under a token is not seen under another or anonymously (the server decides
        # those callers' access when they first resolve the reference). The address is hashed.
        self.refs = RefCache(cache_dir, f"{self.base_url}\n{token or ''}")
        """Immutable references resolved before (registry.client.ref_cache): a pull of one asks
        the server nothing until it needs a blob the cache lacks."""

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

    def fetch_blob(
        self, digest: str, size: int, progress: TransferProgress | None, into: Path | None = None
    ) -> None:
        """Download a blob into the cache (and, with `into`, give that file the name `into` too:
        a hard link). The bytes land in a partial file in the cache's tmp; a
        download cut short (connection lost, body ended early) continues from where it stopped
        with a Range request, at once while each try brings bytes, else on a later pull. The
        whole file is hashed before it enters the cache.

        Raises:
            ServerUnavailable: the server could not be reached, or kept failing mid-download.
            DigestMismatch: the assembled file does not hash to `digest` (it is discarded).
        """
        if self.cache.stat(digest) is not None:
            if into is not None:
                write_verified(self.cache.open(digest), into, digest, size, durable=False)
            return
        try:
            check_digest(digest)  # it names a file here: a hostile manifest must not pick the path
        except InvalidStoreDigest as err:
            raise from_storage_error(err) from err
        partial = self._local.root / "tmp" / f"pull-{digest_hex(digest)}.partial"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.touch()
        have = partial.stat().st_size
        if have > size:
            partial.unlink()
            partial.touch()
            have = 0
        reported = 0

        def reached(length: int) -> None:  # progress counts each byte once, across restarts
            nonlocal reported
            if progress is not None and length > reported:
                progress.advance(length - reported)
                reported = length

        reached(have)
        # A download that starts at byte 0 is hashed as it streams (bytes resumed after a cut
        # continue the same hash: this process wrote every byte before them); one that resumes a
        # partial file an earlier pull left is hashed whole at the end.
        streamed = _StreamHash(have == 0)
        while have < size:
            try:
                have = self._download_from(digest, partial, have, size, reached, streamed)
            except httpx.TransportError as err:
                before, have = have, partial.stat().st_size
                if have <= before:  # no progress: the server is gone, not just the connection
                    raise ServerUnavailable(
                        f"download of {digest} failed ({have} of {size} bytes kept for the next pull): {err}"
                    ) from err
            except SizeMismatch:
                partial.unlink(missing_ok=True)
                raise
        found = streamed.result(have) or sha256_file(str(partial))
        if found.digest != digest or found.size != size:
            partial.unlink(missing_ok=True)
            raise DigestMismatch(
                f"downloaded blob hashes to {found.digest} ({found.size} bytes), expected {digest} "
                f"({size} bytes); discarded",
                expected=digest,
                actual=found.digest,
            )
        try:
            self._local.adopt(partial, digest, size)
            if into is not None:
                link_or_copy(partial, into, digest, size)
        finally:
            partial.unlink(missing_ok=True)

    def _download_from(
        self,
        digest: str,
        partial: Path,
        have: int,
        size: int,
        reached: Callable[[int], None],
        streamed: _StreamHash,
    ) -> int:
        """Append the blob's bytes from offset `have` to `partial`, through `streamed`; the new
        length. A server that ignores the Range (200) sends the whole blob: the partial file starts
        over."""
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.http.stream("GET", f"/v1/blobs/{digest}", headers=headers) as resp:
            if resp.status_code == 416:  # the partial file is not a prefix of this blob
                resp.read()
                partial.unlink(missing_ok=True)
                return 0
            if not resp.is_success:
                resp.read()
                raise_for_problem(resp)
            resumed = resp.status_code == 206 and _range_start(resp) == have
            if not resumed:
                streamed.restart()
            with partial.open("ab" if resumed else "wb") as out:
                got = have if resumed else 0
                for chunk in resp.iter_bytes():  # as they arrive: a cut loses nothing received
                    if got + len(chunk) > size:
                        raise SizeMismatch(
                            f"the server sent more than the {size} bytes of {digest}", expected=size
                        )
                    streamed.update(chunk)
                    out.write(chunk)
                    got += len(chunk)
                    reached(got)
                out.flush()
                os.fsync(out.fileno())
        if got < size:  # the body ended early without an error: resume from here
            raise httpx.RemoteProtocolError(f"body ended after {got} of {size} bytes")
        return got

    def resolve(self, ref: str) -> VersionInfo:
        parse_ref(ref)  # fail fast, with the same message as embedded mode
        resp = self._request("GET", "/v1/resolve", params={"ref": ref})
        return VersionInfo.model_validate(resp.json())

    def resolve_files(self, ref: str, use_cache: bool = True) -> Resolved:
        parsed = parse_ref(ref)

        def fetch() -> Resolved:
            info = self.resolve(ref)
            files = tuple(StoredFile(f.path, f.size, f.sha256) for f in served_files(info))
            return Resolved(info.repo, info.version, info.digest, files)

        return self.refs.resolve(parsed, fetch, use_cache)

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

    def get_base_layout(self, ref: str) -> BaseLayout:
        resp = self._request("GET", "/v1/bases/layout", params={"ref": ref})
        return BaseLayout.model_validate(resp.json())

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

    # ---- access: users, grants, tokens, namespace visibility (/v1/users, grants, tokens, namespaces)
    def whoami(self) -> WhoAmI:
        return WhoAmI.model_validate(self._request("GET", "/v1/whoami").json())

    def add_user(self, name: str, admin: bool = False) -> UserInfo:
        body = {"name": name, "admin": admin}
        return UserInfo.model_validate(self._request("POST", "/v1/users", json=body).json())

    def list_users(self) -> list[UserInfo]:
        return [UserInfo.model_validate(u) for u in self._request("GET", "/v1/users").json()]

    def set_grant(self, user: str, namespace: str, role: str | None) -> GrantInfo:
        # Dots escaped too: a user named `..` must not be normalised out of the path.
        url = f"/v1/grants/{quote(user, safe='').replace('.', '%2E')}/{quote(namespace, safe='')}"
        if role is None:
            return GrantInfo.model_validate(self._request("DELETE", url).json())
        return GrantInfo.model_validate(self._request("PUT", url, json={"role": role}).json())

    def create_token(
        self,
        user: str | None,
        *,
        read_only: bool = False,
        namespaces: list[str] | None = None,
        expires_in: timedelta | None = None,
        name: str | None = None,
    ) -> tuple[str, TokenInfo]:
        body = {
            "user": user,
            "read_only": read_only,
            "namespaces": namespaces,
            "expires_in_s": int(expires_in.total_seconds()) if expires_in is not None else None,
            "name": name,
        }
        doc = self._request("POST", "/v1/tokens", json=body).json()
        secret = doc.pop("token")
        return secret, TokenInfo.model_validate(doc)

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        params = {"user": user} if user is not None else {}
        return [TokenInfo.model_validate(t) for t in self._request("GET", "/v1/tokens", params=params).json()]

    def revoke_token(self, token_id: int) -> TokenInfo:
        return TokenInfo.model_validate(self._request("POST", f"/v1/tokens/{token_id}/revoke").json())

    def set_namespace_visibility(self, namespace: str, public: bool) -> NamespaceInfo:
        url = f"/v1/namespaces/{quote(namespace, safe='')}"
        return NamespaceInfo.model_validate(self._request("PUT", url, json={"public": public}).json())

    def list_namespaces(self) -> list[NamespaceInfo]:
        return [NamespaceInfo.model_validate(n) for n in self._request("GET", "/v1/namespaces").json()]

    def sign_version(self, ref: str, request: SignRequest) -> SignatureInfo:
        info = self.resolve(ref)  # any reference, then the number it names
        r = parse_repo(info.repo)
        self.refs.forget(r)  # a pull now writes the attached model.sig
        resp = self._request(
            "POST",
            f"/v1/repos/{r.namespace}/{r.name}/versions/{info.version}/signatures",
            json=request.model_dump(mode="json"),
        )
        return SignatureInfo.model_validate(resp.json())

    def get_namespace_policy(self, namespace: str) -> NamespacePolicy:
        url = f"/v1/namespaces/{quote(namespace, safe='')}/policy"
        return NamespacePolicy.model_validate(self._request("GET", url).json())

    def set_namespace_policy(self, namespace: str, change: PolicyChange) -> NamespacePolicy:
        url = f"/v1/namespaces/{quote(namespace, safe='')}/policy"
        resp = self._request("PUT", url, json=change.model_dump(mode="json"))
        return NamespacePolicy.model_validate(resp.json())

    # ---- end access

    # ---- lifecycle: deleting, garbage collection, audit (/v1/repos DELETE, /v1/gc, /v1/audit)
    def delete_version(self, ref: str, force: bool = False) -> DeleteResult:
        parsed = parse_ref(ref)
        number = parsed.version if parsed.version is not None else self.resolve(ref).version
        r = parsed.repo
        self.refs.forget(r)
        resp = self._request(
            "DELETE",
            f"/v1/repos/{r.namespace}/{r.name}/versions/{number}",
            params={"force": "true"} if force else None,
        )
        return DeleteResult.model_validate(resp.json())

    def delete_repository(self, repo: str) -> DeleteResult:
        r = parse_repo(repo)
        self.refs.forget(r)
        return DeleteResult.model_validate(
            self._request("DELETE", f"/v1/repos/{r.namespace}/{r.name}").json()
        )

    def collect_garbage(self, dry_run: bool = False, grace_s: float | None = None) -> GcReport:
        body: dict[str, Any] = {"dry_run": dry_run, **({"grace_s": grace_s} if grace_s is not None else {})}
        # A sweep of a large store takes a while: no read timeout.
        resp = self._request("POST", "/v1/gc", json=body, timeout=httpx.Timeout(None, connect=10.0))
        return GcReport.model_validate(resp.json())

    def check_store(self, verify: bool = False) -> FsckReport:
        params = {"verify": "true"} if verify else None
        # A store's listing (and, verifying, every blob's bytes) takes a while: no read timeout.
        resp = self._request("GET", "/v1/fsck", params=params, timeout=httpx.Timeout(None, connect=10.0))
        return FsckReport.model_validate(resp.json())

    def audit_events(
        self, flt: AuditFilter, limit: int = 100, cursor: str | None = None
    ) -> Page[AuditEventInfo]:
        params: dict[str, Any] = {k: v for k, v in flt.model_dump(mode="json").items() if v is not None}
        params.update(limit=limit, **({"cursor": cursor} if cursor else {}))
        resp = self._request("GET", "/v1/audit", params=params)
        return Page[AuditEventInfo].model_validate(resp.json())

    # ---- end lifecycle

    # ---- evaluations, rankings, lineage
    def add_evals(self, ref: str, scores: list[EvalInput], note: str | None = None) -> EvalHistory:
        parse_ref(ref)
        body = {"scores": [s.model_dump(mode="json") for s in scores], "note": note}
        resp = self._request("POST", "/v1/evals", params={"ref": ref}, json=body)
        return EvalHistory.model_validate(resp.json())

    def eval_history(self, ref: str, limit: int = 100) -> EvalHistory:
        parse_ref(ref)
        resp = self._request("GET", "/v1/evals", params={"ref": ref, "limit": limit})
        return EvalHistory.model_validate(resp.json())

    def leaderboard(self, query: LeaderboardQuery) -> Leaderboard:
        params = query.model_dump(mode="json", exclude_none=True)
        return Leaderboard.model_validate(self._request("GET", "/v1/leaderboard", params=params).json())

    def pareto(self, query: ParetoQuery) -> ParetoResult:
        params = query.model_dump(mode="json", exclude_none=True)
        return ParetoResult.model_validate(self._request("GET", "/v1/pareto", params=params).json())

    def common_metrics(self, base: str, task: str | None = None) -> list[MetricCount]:
        params = MetricsQuery(base=base, task=task).model_dump(mode="json", exclude_none=True)
        resp = self._request("GET", "/v1/metrics", params=params)
        return [MetricCount.model_validate(x) for x in resp.json()]

    def compare(self, refs: list[str]) -> Comparison:
        for r in refs:
            parse_ref(r)
        return Comparison.model_validate(self._request("GET", "/v1/compare", params={"ref": refs}).json())

    def lineage(self, target: str, depth: int = 8) -> LineageGraph:
        resp = self._request("GET", f"/v1/lineage/{quote(target, safe='/:@')}", params={"depth": depth})
        return LineageGraph.model_validate(resp.json())

    # ---- end evaluations

    def close(self) -> None:
        self.http.close()


__all__ = ["HttpClient", "RegistryError", "raise_for_problem"]
