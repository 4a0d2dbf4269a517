"""The embedded default: services called in-process on SQLite + a local blob directory."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from registry.access import authentication
from registry.access.entities import GrantInfo, NamespaceInfo, TokenInfo, UserInfo, WhoAmI
from registry.access.principal import Principal
from registry.client.interface import TransferProgress
from registry.client.reads import embedded_address
from registry.client.ref_cache import RefCache
from registry.client.resolved import Resolved
from registry.client.transfer import StoreBlobs
from registry.config import Settings
from registry.db.engine import upgrade_if_needed
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
from registry.errors import BadRequest
from registry.jobspec import JobInfo, JobRequest
from registry.refs import RepoName, parse_ref, parse_repo
from registry.services import (
    accounts,
    aliases,
    bases,
    blobs,
    fit_query,
    jobs,
    queries,
    signatures,
    versions,
)
from registry.services.context import Registry
from storage import BlobStore
from storage.local import local_cache


class LocalClient:
    """The registry's services called in this process, as the operator (or a job's submitter). Runs no jobs: a command
    that waits on one starts a worker beside it (registry.worker.embedded)."""

    in_process = True

    def __init__(
        self,
        registry: Registry,
        user: str,
        cache: BlobStore,
        *,
        principal: Principal,
        refs: RefCache | None = None,
    ) -> None:
        self.registry = registry
        self.refs = refs
        """Immutable references resolved before (registry.client.ref_cache); None: none kept."""
        self.user = user
        self.cache = cache
        self.principal = principal
        """Who the calls act as, always said by the caller (a forgotten one would have been the
        operator): the operator for the embedded CLI (whoever holds the database;
        `Principal.operator(user)`), or a job's submitter when a worker reads and publishes for
        them."""

    @property
    def cache_is_store(self) -> bool:
        return self.cache is self.registry.store

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalClient:
        reg = Registry.from_settings(settings)
        upgrade_if_needed(reg.engine)  # the embedded default migrates itself
        address = embedded_address(settings)
        refs = RefCache(settings.effective_cache_dir, address) if address is not None else None
        # A local blob directory is its own cache: pulls copy straight from it.
        cache = local_cache(reg.store, settings.effective_cache_dir)
        # The embedded registry: whoever holds its database is its operator.
        return cls(reg, settings.user, cache, principal=Principal.operator(settings.user), refs=refs)

    def missing_blobs(self, digests: list[str]) -> list[str]:
        return blobs.missing_for(self.registry, self.principal, digests)

    def upload_blob(self, path: Path, digest: str, size: int, progress: TransferProgress | None) -> None:
        with path.open("rb") as f:
            blobs.upload_as(
                self.registry, self.principal, f, digest, size, progress.advance if progress else None
            )

    def commit(self, repo: str, request: PushRequest) -> PushResult:
        return versions.commit_version(self.registry, repo, request, self.user, principal=self.principal)

    def fetch_blob(
        self, digest: str, size: int, progress: TransferProgress | None, into: Path | None = None
    ) -> None:
        if self.cache.stat(digest) is not None and into is None:
            return
        blobs.require_readable(self.registry, self.principal, digest)
        StoreBlobs(self.registry.store, self.cache).fetch_blob(digest, size, progress, into)

    def resolve(self, ref: str) -> VersionInfo:
        return versions.resolve(self.registry, parse_ref(ref), principal=self.principal)

    def resolve_files(self, ref: str, use_cache: bool = True) -> Resolved:
        parsed = parse_ref(ref)

        def fetch() -> Resolved:
            return Resolved.from_doc(queries.resolve_files(self.registry, parsed, principal=self.principal))

        return self.refs.resolve(parsed, fetch, use_cache) if self.refs is not None else fetch()

    def list_versions(
        self, flt: VersionFilter, limit: int = 50, cursor: str | None = None
    ) -> Page[VersionSummary]:
        return queries.list_versions(self.registry, flt, limit, cursor, principal=self.principal)

    def list_repos(self, limit: int = 50, cursor: str | None = None) -> Page[RepoInfo]:
        return queries.list_repos(self.registry, limit, cursor, principal=self.principal)

    def set_alias(self, ref: str, alias: str) -> AliasInfo:
        return aliases.set_alias(self.registry, parse_ref(ref), alias, principal=self.principal)

    def delete_alias(self, repo: str, alias: str) -> AliasInfo:
        return aliases.delete_alias(self.registry, parse_repo(repo), alias, principal=self.principal)

    def register_base(self, data: BaseRegistration) -> BaseInfo:
        return bases.register_base(self.registry, data, principal=self.principal)

    def get_base(self, ref: str) -> BaseInfo:
        return bases.get_base(self.registry, ref, principal=self.principal)

    def get_base_layout(self, ref: str) -> BaseLayout:
        return bases.get_base_layout(self.registry, ref, principal=self.principal)

    def list_bases(self) -> list[BaseInfo]:
        return bases.list_bases(self.registry, principal=self.principal)

    def fit(self, query: FitQuery) -> FitResult:
        return fit_query.fit(self.registry, query, principal=self.principal)

    def submit_job(self, request: JobRequest) -> JobInfo:
        return jobs.submit(self.registry, request, self.user, principal=self.principal)

    def get_job(self, job_id: int) -> JobInfo:
        return jobs.get(self.registry, job_id, principal=self.principal)

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[JobInfo]:
        return jobs.list_jobs(self.registry, status, limit, principal=self.principal)

    def cancel_job(self, job_id: int) -> JobInfo:
        return jobs.cancel(self.registry, job_id, principal=self.principal)

    # ---- access: users, grants, tokens, namespace visibility (as this client's principal)
    def whoami(self) -> WhoAmI:
        return authentication.whoami(self.principal)

    def add_user(self, name: str, admin: bool = False) -> UserInfo:
        return accounts.add_user(self.registry, name, admin, principal=self.principal)

    def list_users(self) -> list[UserInfo]:
        return accounts.list_users(self.registry, principal=self.principal)

    def set_grant(self, user: str, namespace: str, role: str | None) -> GrantInfo:
        return accounts.grant(self.registry, user, namespace, role, principal=self.principal)

    def create_token(
        self,
        user: str | None,
        *,
        read_only: bool = False,
        namespaces: list[str] | None = None,
        expires_in: timedelta | None = None,
        name: str | None = None,
    ) -> tuple[str, TokenInfo]:
        if user is None:
            if self.principal.user_id is None:  # the operator is no user
                raise BadRequest("give the token's user (--user NAME)", field="user")
            user = self.principal.name
        return accounts.create_token(
            self.registry,
            user,
            read_only=read_only,
            namespaces=namespaces,
            expires_in=expires_in,
            name=name,
            principal=self.principal,
        )

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        return accounts.list_tokens(self.registry, user, principal=self.principal)

    def revoke_token(self, token_id: int) -> TokenInfo:
        return accounts.revoke_token(self.registry, token_id, principal=self.principal)

    def set_namespace_visibility(self, namespace: str, public: bool) -> NamespaceInfo:
        return accounts.set_namespace_visibility(self.registry, namespace, public, principal=self.principal)

    def sign_version(self, ref: str, request: SignRequest) -> SignatureInfo:
        parsed = parse_ref(ref)
        try:
            return signatures.sign_version(self.registry, parsed, request, principal=self.principal)
        finally:  # a pull now writes the attached model.sig
            self._forget(parsed.repo)

    def _forget(self, repo: RepoName) -> None:
        if self.refs is not None:
            self.refs.forget(repo)

    def get_namespace_policy(self, namespace: str) -> NamespacePolicy:
        return signatures.get_policy(self.registry, namespace, principal=self.principal)

    def set_namespace_policy(self, namespace: str, change: PolicyChange) -> NamespacePolicy:
        return signatures.set_policy(self.registry, namespace, change, principal=self.principal)

    def list_namespaces(self) -> list[NamespaceInfo]:
        return accounts.list_namespaces(self.registry, principal=self.principal)

    # ---- end access

    # ---- lifecycle: deleting, garbage collection, audit (as this client's principal)
    def delete_version(self, ref: str, force: bool = False) -> DeleteResult:
        from registry.services import lifecycle

        parsed = parse_ref(ref)
        try:
            return lifecycle.delete_version(self.registry, parsed, force, principal=self.principal)
        finally:
            self._forget(parsed.repo)

    def delete_repository(self, repo: str) -> DeleteResult:
        from registry.services import lifecycle

        name = parse_repo(repo)
        try:
            return lifecycle.delete_repository(self.registry, name, principal=self.principal)
        finally:
            self._forget(name)

    def collect_garbage(self, dry_run: bool = False, grace_s: float | None = None) -> GcReport:
        from registry.services import gc

        grace = gc.DEFAULT_GRACE_S if grace_s is None else grace_s
        return gc.collect_garbage(self.registry, dry_run=dry_run, grace_s=grace, principal=self.principal)

    def check_store(self, verify: bool = False) -> FsckReport:
        from registry.services import fsck

        return fsck.check_store(self.registry, verify=verify, principal=self.principal)

    def audit_events(
        self, flt: AuditFilter, limit: int = 100, cursor: str | None = None
    ) -> Page[AuditEventInfo]:
        from registry.services import audit

        return audit.list_events(self.registry, flt, limit, cursor, principal=self.principal)

    # ---- end lifecycle

    # ---- evaluations, rankings, lineage
    def add_evals(self, ref: str, scores: list[EvalInput], note: str | None = None) -> EvalHistory:
        from registry.services import evaluations

        return evaluations.add_scores(self.registry, parse_ref(ref), scores, note, principal=self.principal)

    def eval_history(self, ref: str, limit: int = 100) -> EvalHistory:
        from registry.services import evaluations

        return evaluations.history(self.registry, parse_ref(ref), limit, principal=self.principal)

    def leaderboard(self, query: LeaderboardQuery) -> Leaderboard:
        from registry.services import rankings

        return rankings.leaderboard(self.registry, query, principal=self.principal)

    def pareto(self, query: ParetoQuery) -> ParetoResult:
        from registry.services import rankings

        return rankings.pareto(self.registry, query, principal=self.principal)

    def common_metrics(self, base: str, task: str | None = None) -> list[MetricCount]:
        from registry.services import rankings

        q = MetricsQuery(base=base, task=task)
        return rankings.common_metrics(self.registry, q.base, q.task, principal=self.principal)

    def compare(self, refs: list[str]) -> Comparison:
        from registry.services import rankings

        return rankings.compare(self.registry, [parse_ref(r) for r in refs], principal=self.principal)

    def lineage(self, target: str, depth: int = 8) -> LineageGraph:
        from registry.services import lineage

        return lineage.graph(self.registry, target, principal=self.principal, depth=depth)

    # ---- end evaluations

    def close(self) -> None:
        self.registry.close()
