"""What a worker needs to know, given to it explicitly (never re-read from the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.config import Settings


@dataclass(frozen=True)
class WorkerSettings:
    work_dir: Path
    """Scratch space: one folder per run, removed when the run ends."""
    cache_dir: Path
    """Where pulled blobs land when the blob store is not a local directory."""
    lease_s: float
    poll_s: float
    device: str = "auto"
    """cpu, cuda, or auto (a GPU when torch sees one)."""
    name: str | None = None
    """Recorded in job leases (default host:pid:random)."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, device: str = "auto", name: str | None = None
    ) -> WorkerSettings:
        return cls(
            work_dir=settings.effective_work_dir,
            cache_dir=settings.effective_cache_dir,
            lease_s=settings.job_lease_s,
            poll_s=settings.worker_poll_s,
            device=device,
            name=name,
        )
