"""What a running job sees: its claim, progress reporting, cancellation checks, its scratch space
(what it reads and writes through: worker/io.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from registry.errors import JobCancelled, LeaseLost
from registry.services import jobs
from registry.services.context import Registry
from registry.worker.settings import WorkerSettings
from storage.local import LocalBlobStore


@dataclass
class JobContext:
    reg: Registry
    settings: WorkerSettings
    claim: jobs.Claim
    cache: LocalBlobStore
    """Where the job's inputs land (the blob store itself when it is a local directory)."""
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

    @property
    def scratch_path(self) -> Path:
        return self.settings.work_dir / f"job-{self.claim.job_id}-{self.claim.fence}"

    def scratch(self) -> Path:
        """This run's scratch folder (created on first use, removed when the run ends)."""
        self.scratch_path.mkdir(parents=True, exist_ok=True)
        return self.scratch_path

    def torch_device(self) -> str:
        if self.settings.device != "auto":
            return self.settings.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


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
