"""The interface the CLI (and Python users) talk to, whatever the mode."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

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
from storage import BlobStore


class TransferProgress(Protocol):
    """Byte progress of a push or pull; the CLI draws it as a bar."""

    def start(self, description: str, total_bytes: int) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...


class RegistryClient(Protocol):
    cache: BlobStore
    """Where pulled blobs land before being copied out: a local content-addressed store."""
    in_process: bool
    """True when the registry's services run in this process (embedded, LocalClient): jobs can run
    beside the command, and they read local paths it names. False over HTTP (a server's workers)."""

    def missing_blobs(self, digests: list[str]) -> list[str]: ...

    def upload_blob(self, path: Path, digest: str, size: int, progress: TransferProgress | None) -> None: ...

    def commit(self, repo: str, request: PushRequest) -> PushResult: ...

    def fetch_blob(self, digest: str, size: int, progress: TransferProgress | None) -> None:
        """Make sure `digest` is in `self.cache`, downloading it if needed."""
        ...

    def resolve(self, ref: str) -> VersionInfo: ...

    def list_versions(
        self, flt: VersionFilter, limit: int = 50, cursor: str | None = None
    ) -> Page[VersionSummary]: ...

    def list_repos(self, limit: int = 50, cursor: str | None = None) -> Page[RepoInfo]: ...

    def set_alias(self, ref: str, alias: str) -> AliasInfo: ...

    def delete_alias(self, repo: str, alias: str) -> AliasInfo: ...

    def register_base(self, data: BaseRegistration) -> BaseInfo: ...

    def get_base(self, ref: str) -> BaseInfo: ...

    def list_bases(self) -> list[BaseInfo]: ...

    def fit(self, query: FitQuery) -> FitResult: ...

    def submit_job(self, request: JobRequest) -> JobInfo: ...

    def get_job(self, job_id: int) -> JobInfo: ...

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[JobInfo]: ...

    def cancel_job(self, job_id: int) -> JobInfo: ...

    def close(self) -> None: ...
