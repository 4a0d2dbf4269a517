"""The interface the CLI (and Python users) talk to, whatever the mode."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Protocol

from registry.access.entities import GrantInfo, NamespaceInfo, TokenInfo, UserInfo, WhoAmI
from registry.client.resolved import Resolved
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
from registry.jobspec import JobInfo, JobRequest
from storage import BlobStore


class TransferProgress(Protocol):
    """Byte progress of a push or pull; the CLI draws it as a bar."""

    def start(self, description: str, total_bytes: int) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...


class RegistryClient(Protocol):
    cache: BlobStore
    """Where pulled blobs land before being copied out: a local content-addressed store."""

    @property
    def cache_is_store(self) -> bool:
        """True when `cache` is the registry's own blob directory (embedded, file store): a blob
        there that hashes wrong is the registry's (corrupt), not a stale cache entry to drop."""
        ...

    in_process: bool
    """True when the registry's services run in this process (embedded, LocalClient): jobs can run
    beside the command, and they read local paths it names. False over HTTP (a server's workers)."""

    def missing_blobs(self, digests: list[str]) -> list[str]: ...

    def upload_blob(self, path: Path, digest: str, size: int, progress: TransferProgress | None) -> None: ...

    def commit(self, repo: str, request: PushRequest) -> PushResult: ...

    def fetch_blob(
        self, digest: str, size: int, progress: TransferProgress | None, into: Path | None = None
    ) -> None:
        """Make sure `digest` is in `self.cache`, downloading it if needed. With `into` (a new file,
        which must not exist yet), download it there, verified, and let the cache take that file
        (a hard link; a copy across filesystems): each byte is written once."""
        ...

    def resolve(self, ref: str) -> VersionInfo: ...

    def resolve_files(self, ref: str, use_cache: bool = True) -> Resolved:
        """What a pull of `ref` writes (the version's files and an attached model.sig), from the
        client's RefCache for a number or a digest resolved before (`use_cache` False: asked
        again); registry.client.ref_cache says when an entry is dropped."""
        ...

    def list_versions(
        self, flt: VersionFilter, limit: int = 50, cursor: str | None = None
    ) -> Page[VersionSummary]: ...

    def list_repos(self, limit: int = 50, cursor: str | None = None) -> Page[RepoInfo]: ...

    def set_alias(self, ref: str, alias: str) -> AliasInfo: ...

    def delete_alias(self, repo: str, alias: str) -> AliasInfo: ...

    def register_base(self, data: BaseRegistration) -> BaseInfo: ...

    def get_base(self, ref: str) -> BaseInfo: ...

    def get_base_layout(self, ref: str) -> BaseLayout:
        """The base with its config.json and module table (the planner's input)."""
        ...

    def list_bases(self) -> list[BaseInfo]: ...

    def fit(self, query: FitQuery) -> FitResult: ...

    def submit_job(self, request: JobRequest) -> JobInfo: ...

    def get_job(self, job_id: int) -> JobInfo: ...

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[JobInfo]: ...

    def cancel_job(self, job_id: int) -> JobInfo: ...

    # ---- access: users, grants, tokens, namespace visibility (registry.services.accounts)
    def whoami(self) -> WhoAmI:
        """Who the calls act as (the operator with direct database access; over HTTP the token's user)."""
        ...

    def add_user(self, name: str, admin: bool = False) -> UserInfo: ...

    def list_users(self) -> list[UserInfo]: ...

    def set_grant(self, user: str, namespace: str, role: str | None) -> GrantInfo:
        """Give `user` `role` (read, write, admin) in `namespace`; None removes their role there."""
        ...

    def create_token(
        self,
        user: str | None,
        *,
        read_only: bool = False,
        namespaces: list[str] | None = None,
        expires_in: timedelta | None = None,
        name: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new token for `user` (None: the caller's own user): its secret, shown once, and its
        description."""
        ...

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]: ...

    def revoke_token(self, token_id: int) -> TokenInfo: ...

    def set_namespace_visibility(self, namespace: str, public: bool) -> NamespaceInfo: ...

    def list_namespaces(self) -> list[NamespaceInfo]: ...

    # ---- end access

    # ---- signatures and signing policies (registry.services.signatures)
    def sign_version(self, ref: str, request: SignRequest) -> SignatureInfo:
        """Attach a model-signing bundle over the version's files (`ref` names one version)."""
        ...

    def get_namespace_policy(self, namespace: str) -> NamespacePolicy: ...

    def set_namespace_policy(self, namespace: str, change: PolicyChange) -> NamespacePolicy: ...

    # ---- lifecycle: deleting, garbage collection, audit (registry.services.lifecycle, gc, audit)
    def delete_version(self, ref: str, force: bool = False) -> DeleteResult:
        """Delete the version `ref` names; refused while aliased unless `force` (removes the aliases)."""
        ...

    def delete_repository(self, repo: str) -> DeleteResult: ...

    def collect_garbage(self, dry_run: bool = False, grace_s: float | None = None) -> GcReport:
        """Mark and sweep the blob store (`grace_s` None: the registry's default)."""
        ...

    def check_store(self, verify: bool = False) -> FsckReport:
        """The database against the blob store (`verify`: hash every listed blob); changes nothing."""
        ...

    def audit_events(
        self, flt: AuditFilter, limit: int = 100, cursor: str | None = None
    ) -> Page[AuditEventInfo]: ...

    # ---- end lifecycle

    # ---- evaluations, rankings, lineage (registry.services.evaluations, rankings, lineage)
    def add_evals(self, ref: str, scores: list[EvalInput], note: str | None = None) -> EvalHistory:
        """Append scores to the history of the version `ref` names (write permission)."""
        ...

    def eval_history(self, ref: str, limit: int = 100) -> EvalHistory:
        """The newest `limit` records (1..1000; `total` counts all) and every current score."""
        ...

    def leaderboard(self, query: LeaderboardQuery) -> Leaderboard: ...

    def pareto(self, query: ParetoQuery) -> ParetoResult: ...

    def common_metrics(self, base: str, task: str | None = None) -> list[MetricCount]:
        """The metrics scored on the versions that fit `base`, most common first."""
        ...

    def compare(self, refs: list[str]) -> Comparison: ...

    def lineage(self, target: str, depth: int = 8) -> LineageGraph:
        """The lineage graph around a version ref or a base name / fingerprint."""
        ...

    # ---- end evaluations

    def close(self) -> None: ...
