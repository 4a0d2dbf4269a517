"""How every job's output appears, whatever its type: its files stored first as blobs (invisible
until something references them), then one transaction that records the output (a version, a
derived base, a 4-bit verdict) and marks the job succeeded, only while this worker's claim holds."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from registry.access.principal import Principal
from registry.entities import FileInfo
from registry.jobspec import ExportResult, JobResult, MergeResult
from registry.services import blobs, jobs
from registry.worker import provenance
from registry.worker.context import JobContext, StageProgress
from storage.base import sha256_file

T = TypeVar("T")
R = TypeVar("R", bound=JobResult)
OnCommit = Callable[[Session, T], None]
"""The hook a service runs inside its transaction, after writing and before committing."""


@dataclass(frozen=True)
class Published(Generic[R]):
    """What a job body returns: proof that its output and its success were committed together.
    Only `publish` makes one, so a body cannot end without publishing."""

    result: R


def publish(
    ctx: JobContext,
    write: Callable[[OnCommit[T]], T],
    result: Callable[[T], R],
    inputs: provenance.Inputs | None = None,
) -> Published[R]:
    """Record the job's output with `write` (a service call given the hook as its `on_commit`),
    and in the same transaction mark the job succeeded with `result(output)`; a merge's or an
    export's output gets its provenance statement from `inputs`, signed with the worker's key.

    The hook checks the claim's fence and cancellation on the locked job row (services.jobs.fenced):
    a worker whose lease was taken over, or a cancelled job, raises LeaseLost or JobCancelled
    inside the transaction, which rolls back: nothing is published.
    """
    ctx.check()
    done: list[R] = []

    def hook(session: Session, output: T) -> None:
        ctx.check()
        typed = result(output)
        key = ctx.settings.signing_key
        if key is not None and inputs is not None and isinstance(typed, MergeResult | ExportResult):
            c = ctx.claim
            job = {"id": c.job_id, "type": c.type, "params": c.params, "attempt": c.attempt}
            provenance.attach(session, ctx.reg.store, key, job, typed, inputs, ctx.settings.name)
        jobs.succeed(session, ctx.claim, typed.model_dump(mode="json"))
        done.append(typed)

    write(hook)
    if not done:
        raise RuntimeError(f"job {ctx.claim.job_id}: the publication did not run its fenced hook")
    return Published(done[0])


def store_outputs(
    ctx: JobContext,
    principal: Principal,
    files: list[tuple[str, Path]],
    uploading: tuple[float, float] = (0.9, 1.0),
) -> list[FileInfo]:
    """Hash the job's output files (in parallel) and store each as a blob: the local store links
    it (scratch and blobs share a disk), others upload it, and record the submitter's
    (`principal`'s) proof of holding it (blobs.record_upload). Returns the manifest entries."""
    ctx.report(ctx.progress, "hashing the outputs")
    with ThreadPoolExecutor() as pool:
        infos = list(pool.map(lambda f: sha256_file(str(f[1])), files))
    progress = StageProgress(ctx, {"uploading": uploading})
    progress.start("uploading", sum(i.size for i in infos))
    for (_, path), info in zip(files, infos, strict=True):
        ctx.reg.store.adopt(path, info.digest, info.size, progress.advance)
        # The job produced these bytes for its submitter: record the proof, as for a blob they
        # uploaded, so the publication (which checks it as the submitter) may reference them.
        blobs.record_upload(ctx.reg, principal, info.digest)
    progress.finish()
    return [
        FileInfo(path=name, size=i.size, sha256=i.digest) for (name, _), i in zip(files, infos, strict=True)
    ]
