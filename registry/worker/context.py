"""What a running job sees: its claim, progress reporting, cancellation checks, fenced publishing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from registry.client.local import LocalClient
from registry.config import Settings
from registry.entities import BaseInfo, BaseRegistration, PushRequest, PushResult
from registry.errors import JobCancelled, LeaseLost
from registry.services import bases, jobs, versions
from registry.services.context import Registry
from storage import BlobStore


@dataclass
class JobContext:
    reg: Registry
    settings: Settings
    claim: jobs.Claim
    device: str
    cache: BlobStore
    progress: float = 0.0
    stage: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set by the heartbeat thread when someone asked to cancel the job."""
    lost: threading.Event = field(default_factory=threading.Event)
    """Set by the heartbeat thread when another worker took the job over."""

    def report(self, fraction: float, stage: str | None = None) -> None:
        """Record progress (sent with the next heartbeat) and stop here if the job must stop."""
        self.progress = fraction
        if stage is not None:
            self.stage = stage
        self.check()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"job {self.claim.job_id}: another worker holds it now")
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.claim.job_id} was cancelled")

    def publisher(self, result: Callable[[Any], dict[str, Any]]) -> Callable[[Session, Any], None]:
        """An on_commit hook: completes the job in the transaction that publishes its output, so
        the output appears exactly when the job succeeds, and only while this claim holds."""

        def hook(session: Session, published: Any) -> None:
            self.check()
            jobs.succeed(session, self.claim, result(published))

        return hook

    @property
    def scratch_path(self) -> Path:
        return self.settings.effective_work_dir / f"job-{self.claim.job_id}-{self.claim.fence}"

    def scratch(self) -> Path:
        """This run's scratch folder (created on first use, removed when the run ends)."""
        self.scratch_path.mkdir(parents=True, exist_ok=True)
        return self.scratch_path

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


class WorkerClient(LocalClient):
    """The registry as a job sees it: the same services as embedded mode, acting as the job's
    submitter, with version commits publishing the job's result (fenced)."""

    def __init__(self, ctx: JobContext, result: Callable[[PushResult], dict[str, Any]]) -> None:
        super().__init__(ctx.reg, ctx.claim.created_by, ctx.cache)
        self.ctx = ctx
        self.result = result

    def commit(self, repo: str, request: PushRequest) -> PushResult:
        self.ctx.check()
        return versions.commit_version(
            self.registry, repo, request, self.user, on_commit=self.ctx.publisher(self.result)
        )

    def register_derived(
        self, data: BaseRegistration, result: Callable[[BaseInfo], dict[str, Any]]
    ) -> BaseInfo:
        self.ctx.check()
        return bases.register_base(self.registry, data, on_commit=self.ctx.publisher(result))

    def close(self) -> None:
        """The registry belongs to the worker, not to this job."""


class StageProgress:
    """A TransferProgress (bytes) mapped onto a window of the job's progress fraction."""

    def __init__(self, ctx: JobContext, windows: dict[str, tuple[float, float]]) -> None:
        self.ctx = ctx
        self.windows = windows
        self.window = (0.0, 0.0)
        self.total = 0
        self.done = 0
        self.description = ""

    def start(self, description: str, total_bytes: int) -> None:
        self.window = self.windows.get(description, (self.ctx.progress, self.ctx.progress))
        self.total, self.done, self.description = max(total_bytes, 1), 0, description
        self.ctx.report(self.window[0], description)

    def advance(self, n: int) -> None:
        self.done += n
        lo, hi = self.window
        self.ctx.report(lo + (hi - lo) * min(1.0, self.done / self.total))

    def finish(self) -> None:
        self.ctx.report(self.window[1])


def version_result(res: PushResult) -> dict[str, Any]:
    return {
        "kind": "version",
        "ref": f"{res.repo}:{res.version}",
        "repo": res.repo,
        "version": res.version,
        "digest": res.digest,
        "created": res.created,
    }
