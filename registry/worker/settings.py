"""What a worker needs to know, given to it explicitly (never re-read from the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from registry.config import Settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey


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
    signing_key: EllipticCurvePrivateKey | None = None
    """Signs the provenance of merges and exports (registry/worker/provenance.py); None: unsigned."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, device: str = "auto", name: str | None = None
    ) -> WorkerSettings:
        from registry.worker.provenance import worker_key

        return cls(
            signing_key=worker_key(settings),
            work_dir=settings.effective_work_dir,
            cache_dir=settings.effective_cache_dir,
            lease_s=settings.job_lease_s,
            poll_s=settings.worker_poll_s,
            device=device,
            name=name,
        )
