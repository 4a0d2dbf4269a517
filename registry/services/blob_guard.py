"""The exclusion between garbage collection and everything that makes a blob referenced (a
version commit, a base registration): a commit can never succeed listing a blob that gc deletes.

Both sides take one lock inside their transaction. A gc run marks (reads every reference) and
records the digests it will delete (`gc_sweeps`) under the lock held exclusively; a commit takes
it shared, refuses digests in `gc_sweeps`, and checks again that each blob is in the store, then
inserts its references before committing. So either the commit's references are committed before
gc marks (gc sees them and keeps the blobs), or gc's sweep rows are committed before the commit
looks (it is refused while they exist, and after gc removed them the blob is gone from the store,
which the second look sees). On PostgreSQL the lock is a transaction-scoped advisory lock (shared
for commits, which do not exclude each other); on SQLite every transaction is `BEGIN IMMEDIATE`,
the single writer, so the transactions are already serialised.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from registry.db import models as m
from registry.errors import BlobMissing
from storage import BlobStore

GC_LOCK_KEY = 0x6164_6763  # "adgc": the advisory lock's key, one per database
"""Any bigint; it only has to be the same for every process sharing the database."""


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_for_gc(session: Session) -> None:
    """Exclusive: no commit is between its check and its commit while this transaction runs."""
    if _postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": GC_LOCK_KEY})


def share_gc_lock(session: Session) -> None:
    """Shared: commits do not exclude each other, only a gc run (taken again, a no-op)."""
    if _postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": GC_LOCK_KEY})


def being_swept(session: Session, digests: Iterable[str]) -> set[str]:
    """The digests a gc run is deleting right now: present in the store, but not for long."""
    wanted = sorted(set(digests))
    if not wanted:
        return set()
    return set(session.scalars(select(m.GcSweep.digest).where(m.GcSweep.digest.in_(wanted))))


def guard_blobs(session: Session, store: BlobStore, files: Iterable[tuple[str, str, int]]) -> None:
    """Inside the transaction that will reference (path, digest, size) `files`: take the lock
    shared, refuse a digest a gc run is deleting, and check each blob is (still) stored.

    Raises:
        BlobMissing: as for a blob never uploaded (409): upload it again, then commit.
    """
    entries = list(files)
    if not entries:
        return
    share_gc_lock(session)
    digests = sorted({d for _, d, _ in entries})
    sweeping = being_swept(session, digests)
    for path, digest, size in entries:
        held = None if digest in sweeping else store.stat(digest)
        if held is None or held.size != size:
            raise BlobMissing(
                f"{path}: blob {digest} ({size} bytes) is not in the store (garbage-collected "
                "meanwhile?); upload it again",
                path=path,
                digest=digest,
            )
