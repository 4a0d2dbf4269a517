"""Garbage collection of the blob store: mark and sweep.

Mark: every digest a version lists (version_files) or a base lists (uploaded bases and exports),
plus every blob written, uploaded or recorded within the grace period (a push or a job output in
flight: its blobs are stored before the commit that references them). Sweep: every other blob the
store holds. What it reclaims: blobs of refused pushes, of cancelled, failed or superseded jobs,
and of deleted versions.

The exclusion with commits is in services/blob_guard.py: the mark and the recording of the
digests to delete (`gc_sweeps`) happen in one transaction under the gc lock, commits check those
rows and the store under the same lock, so a commit never succeeds listing a blob gc deletes.
One run at a time: a second is refused with `gc_running` while the first's rows are fresh; rows
older than STALE_SWEEP_S (a run that died) are taken over and finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from registry.access.policy import global_admin
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import GcReport
from registry.errors import (
    BadRequest,
    Forbidden,
    GcRunning,
    Unauthenticated,
    from_storage_error,
    store_errors,
)
from registry.observability import events
from registry.services import audit, xet_store
from registry.services.blob_guard import lock_for_gc
from registry.services.context import Registry
from registry.services.timeutil import now
from storage import StoredBlob

DEFAULT_GRACE_S = 24 * 3600.0
"""A blob younger than this is kept even if nothing lists it: a push uploads its blobs before it
commits, a job stores its outputs before it publishes. A day covers any upload that finishes."""
STALE_SWEEP_S = 3600.0
"""Sweep rows older than this belong to a gc that died part-way: the next run finishes them."""
CHUNK = 500


def collect_garbage(
    reg: Registry,
    *,
    dry_run: bool = False,
    grace_s: float = DEFAULT_GRACE_S,
    principal: Principal,
) -> GcReport:
    """Delete the blobs nothing lists and nothing wrote within `grace_s` seconds (a dry run only
    reports them). Global admins and the operator only."""
    if not global_admin(principal, "admin"):
        if principal.is_anonymous:
            raise Unauthenticated("gc needs a token")
        raise Forbidden("gc: global admins only", action="admin")
    if not grace_s >= 0:
        raise BadRequest("the grace period must be a non-negative number of seconds", field="grace_s")
    try:
        report = _collect(reg, dry_run, grace_s, principal)
        report = _collect_xet(reg, report, dry_run, grace_s)
    except GcRunning:
        events.sink().gc_run("refused", 0, 0)
        raise
    except Exception:
        events.sink().gc_run("failed", 0, 0)
        raise
    events.sink().gc_run("dry_run" if dry_run else "ok", report.blobs_reclaimed, report.bytes_reclaimed)
    return report


def _collect(reg: Registry, dry_run: bool, grace_s: float, principal: Principal) -> GcReport:
    started = now()
    cutoff = started - timedelta(seconds=grace_s)
    try:
        listing = list(reg.store.iter_blobs())
    except store_errors() as err:
        raise from_storage_error(err) from err
    run_id = uuid.uuid4().hex
    with unit_of_work(reg.sessions) as session:
        lock_for_gc(session)
        sweeping = session.execute(select(m.GcSweep.digest, m.GcSweep.started_at)).all()
        stale_before = started - timedelta(seconds=STALE_SWEEP_S)
        if any(at > stale_before for _, at in sweeping):
            raise GcRunning("another gc is deleting blobs; try again when it has finished")
        keep = _marked(session) | _recent(session, cutoff)
        sizes = {b.digest: b.size for b in listing}
        doomed = {b.digest for b in listing if b.digest not in keep and b.modified < cutoff.timestamp()}
        if not dry_run:
            doomed |= {d for d, _ in sweeping}  # a dead run's leftovers: unreferenced since
            session.execute(delete(m.GcSweep))
            session.add_all(m.GcSweep(digest=d, run_id=run_id, started_at=started) for d in sorted(doomed))
    reclaimed = sorted(doomed)
    errors = 0
    if not dry_run:
        gone: list[str] = []
        for digest in reclaimed:
            try:
                reg.store.delete(digest)
            except store_errors():
                errors += 1  # kept: nothing lists it, the next run tries again
            else:
                gone.append(digest)
        reclaimed = gone
        with unit_of_work(reg.sessions) as session:
            session.execute(delete(m.GcSweep).where(m.GcSweep.run_id == run_id))
            for part in _chunks(reclaimed):
                session.execute(delete(m.BlobUpload).where(m.BlobUpload.digest.in_(part)))
                session.execute(
                    delete(m.Blob).where(
                        m.Blob.digest.in_(part),
                        ~exists().where(m.VersionFile.digest == m.Blob.digest),
                        ~exists().where(m.VersionSignature.digest == m.Blob.digest),
                    )
                )
            report = _report(listing, reclaimed, sizes, dry_run, grace_s, errors)
            audit.record(
                session,
                principal,
                "gc",
                "blob store",
                {
                    "grace_s": grace_s,
                    "blobs_reclaimed": report.blobs_reclaimed,
                    "bytes_reclaimed": report.bytes_reclaimed,
                    "errors": errors,
                },
            )
            return report
    return _report(listing, reclaimed, sizes, dry_run, grace_s, errors)


def _report(
    listing: list[StoredBlob],
    reclaimed: list[str],
    sizes: dict[str, int],
    dry_run: bool,
    grace_s: float,
    errors: int,
) -> GcReport:
    return GcReport(
        dry_run=dry_run,
        grace_s=grace_s,
        blobs_scanned=len(listing),
        blobs_kept=len(listing) - len(set(reclaimed) & sizes.keys()),
        blobs_reclaimed=len(reclaimed),
        bytes_reclaimed=sum(sizes.get(d, 0) for d in reclaimed),
        digests=reclaimed,
        errors=errors,
    )


def _collect_xet(reg: Registry, report: GcReport, dry_run: bool, grace_s: float) -> GcReport:
    """Then Xet's xorbs (services/xet_store.py): those no file kept by the same marks names."""
    cutoff = now() - timedelta(seconds=grace_s)
    with unit_of_work(reg.sessions) as session:
        keep = _marked(session) | _recent(session, cutoff)
    swept = xet_store.reclaim(reg, keep, cutoff, dry_run)
    return report.model_copy(update={"xorbs_reclaimed": swept.xorbs, "xorb_bytes_reclaimed": swept.bytes})


def _marked(session: Session) -> set[str]:
    """Every digest a version or a base lists, and the signatures attached to them."""
    marked = set(session.scalars(select(m.VersionFile.digest).distinct()))
    marked.update(session.scalars(select(m.VersionSignature.digest).distinct()))  # attached bundles
    for (manifest,) in session.execute(select(m.BaseModel.manifest).where(m.BaseModel.manifest.is_not(None))):
        marked.update(
            f["sha256"] for f in (manifest or {}).get("files", []) if isinstance(f, dict) and "sha256" in f
        )
    return marked


def _recent(session: Session, cutoff: datetime) -> set[str]:
    """Blobs a user uploaded (their proof rows) or a commit recorded within the grace period."""
    uploads = session.scalars(select(m.BlobUpload.digest).where(m.BlobUpload.created_at >= cutoff))
    rows = session.scalars(select(m.Blob.digest).where(m.Blob.created_at >= cutoff))
    return set(uploads) | set(rows)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch
