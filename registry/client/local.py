"""The embedded default: services called in-process on SQLite + a local blob directory."""

from __future__ import annotations

from pathlib import Path

from registry.client.interface import TransferProgress
from registry.config import Settings
from registry.db.engine import current_revision, head_revision, upgrade
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
from registry.jobspec import JobInfo, JobRequest
from registry.refs import parse_ref, parse_repo
from registry.services import aliases, bases, blobs, fit_query, jobs, queries, versions
from registry.services.context import Registry
from storage import BlobStore
from storage.local import local_cache


class LocalClient:
    """The registry's services called in this process, acting as `user`. Runs no jobs: a command
    that waits on one starts a worker beside it (registry.worker.embedded)."""

    in_process = True

    def __init__(self, registry: Registry, user: str, cache: BlobStore) -> None:
        self.registry = registry
        self.user = user
        self.cache = cache

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalClient:
        reg = Registry.from_settings(settings)
        if current_revision(reg.engine) != head_revision():
            upgrade(reg.engine)
        # A local blob directory is its own cache: pulls copy straight from it.
        return cls(reg, settings.user, local_cache(reg.store, settings.effective_cache_dir))

    def missing_blobs(self, digests: list[str]) -> list[str]:
        return blobs.missing_blobs(self.registry.store, digests)

    def upload_blob(self, path: Path, digest: str, size: int, progress: TransferProgress | None) -> None:
        with path.open("rb") as f:
            blobs.upload_blob(self.registry.store, f, digest, size, progress.advance if progress else None)

    def commit(self, repo: str, request: PushRequest) -> PushResult:
        return versions.commit_version(self.registry, repo, request, self.user)

    def fetch_blob(self, digest: str, size: int, progress: TransferProgress | None) -> None:
        if self.cache.stat(digest) is not None:
            return
        from registry.client.transfer import IterReader

        reader = IterReader(self.registry.store.open(digest))
        blobs.upload_blob(self.cache, reader, digest, size, progress.advance if progress else None)

    def resolve(self, ref: str) -> VersionInfo:
        return versions.resolve(self.registry, parse_ref(ref))

    def list_versions(
        self, flt: VersionFilter, limit: int = 50, cursor: str | None = None
    ) -> Page[VersionSummary]:
        return queries.list_versions(self.registry, flt, limit, cursor)

    def list_repos(self, limit: int = 50, cursor: str | None = None) -> Page[RepoInfo]:
        return queries.list_repos(self.registry, limit, cursor)

    def set_alias(self, ref: str, alias: str) -> AliasInfo:
        return aliases.set_alias(self.registry, parse_ref(ref), alias)

    def delete_alias(self, repo: str, alias: str) -> AliasInfo:
        return aliases.delete_alias(self.registry, parse_repo(repo), alias)

    def register_base(self, data: BaseRegistration) -> BaseInfo:
        return bases.register_base(self.registry, data)

    def get_base(self, ref: str) -> BaseInfo:
        return bases.get_base(self.registry, ref)

    def list_bases(self) -> list[BaseInfo]:
        return bases.list_bases(self.registry)

    def fit(self, query: FitQuery) -> FitResult:
        return fit_query.fit(self.registry, query)

    def submit_job(self, request: JobRequest) -> JobInfo:
        return jobs.submit(self.registry, request, self.user)

    def get_job(self, job_id: int) -> JobInfo:
        return jobs.get(self.registry, job_id)

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[JobInfo]:
        return jobs.list_jobs(self.registry, status, limit)

    def cancel_job(self, job_id: int) -> JobInfo:
        return jobs.cancel(self.registry, job_id)

    def close(self) -> None:
        self.registry.close()
