"""The database against the blob store (`adapters fsck`): what to do when the two disagree.

Every digest a version file or an uploaded base lists (gc's mark, `gc._marked`) must be in the
store with the listed size (with `verify`, with bytes that hash to it). A blob that is not is a
problem, reported with every version and base that lists it: restore it from a backup of the blob
store, or delete those versions. A blob the store holds that nothing lists is a stray: `adapters
gc` reclaims it once it is older than the grace period (younger, it may belong to a push or job
not yet committed, and is flagged `recent`). Reading only: nothing is changed, no lock is taken.
Global admins and the operator only, as gc.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from registry.access.policy import global_admin
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import FsckProblem, FsckReport, FsckStray
from registry.errors import Forbidden, Unauthenticated, from_storage_error, store_errors
from registry.services.context import Registry
from registry.services.gc import DEFAULT_GRACE_S
from registry.services.timeutil import now
from storage import StoredBlob
from storage.base import digest_hex


class _Listing:
    """What the database lists: digest -> size, and who lists it."""

    def __init__(self) -> None:
        self.size: dict[str, int] = {}
        self.versions: defaultdict[str, list[str]] = defaultdict(list)
        self.bases: defaultdict[str, list[str]] = defaultdict(list)
        self.version_of: defaultdict[str, set[str]] = defaultdict(set)
        self.versions_checked = 0


def check_store(
    reg: Registry, *, principal: Principal, verify: bool = False, grace_s: float = DEFAULT_GRACE_S
) -> FsckReport:
    """Compare what versions and bases list with what the store holds (see the module)."""
    if not global_admin(principal, "admin"):
        if principal.is_anonymous:
            raise Unauthenticated("fsck needs a token")
        raise Forbidden("fsck: global admins only", action="admin")
    started = now()
    try:
        stored = {b.digest: b for b in reg.store.iter_blobs()}
    except store_errors() as err:
        raise from_storage_error(err) from err
    listed = _listed(reg)  # after the store's listing: a blob committed meanwhile is not "missing"
    problems = []
    for digest, size in sorted(listed.size.items()):
        blob = stored.get(digest)
        problem = _problem(reg, blob, size, verify) if blob is not None else ("missing", None)
        if problem is not None:
            kind, stored_size = problem
            problems.append(
                FsckProblem(
                    digest=digest,
                    size=size,
                    problem=kind,
                    stored_size=stored_size,
                    versions=sorted(listed.versions[digest]),
                    bases=sorted(listed.bases[digest]),
                )
            )
    cutoff = (started - timedelta(seconds=grace_s)).timestamp()
    unlisted = [
        FsckStray(
            digest=b.digest,
            size=b.size,
            modified=datetime.fromtimestamp(b.modified, UTC),
            recent=b.modified >= cutoff,
        )
        for b in sorted(stored.values(), key=lambda b: b.digest)
        if b.digest not in listed.size
    ]
    affected = sorted({v for p in problems for v in listed.version_of[p.digest]})
    return FsckReport(
        clean=not problems and not unlisted,
        verified=verify,
        versions_checked=listed.versions_checked,
        blobs_listed=len(listed.size),
        blobs_scanned=len(stored),
        problems=problems,
        versions_affected=affected,
        unlisted=unlisted,
        bytes_unlisted=sum(s.size for s in unlisted),
    )


def _listed(reg: Registry) -> _Listing:
    out = _Listing()
    with unit_of_work(reg.sessions) as session:
        rows = session.execute(
            select(m.Repository.namespace, m.Repository.name, m.Version.number, m.VersionFile.path)
            .add_columns(m.VersionFile.digest, m.VersionFile.size)
            .join(m.Version, m.Version.repository_id == m.Repository.id)
            .join(m.VersionFile, m.VersionFile.version_id == m.Version.id)
        )
        versions = set()
        for ns, name, number, path, digest, size in rows:
            ref = f"{ns}/{name}:{number}"
            versions.add(ref)
            out.size[digest] = size
            out.versions[digest].append(f"{ref} {path}")
            out.version_of[digest].add(ref)
        out.versions_checked = len(versions)
        names: defaultdict[int, list[str]] = defaultdict(list)
        for name, base_id in session.execute(select(m.BaseName.name, m.BaseName.base_model_id)):
            names[base_id].append(name)
        bases = session.execute(
            select(m.BaseModel.id, m.BaseModel.fingerprint, m.BaseModel.manifest).where(
                m.BaseModel.manifest.is_not(None)
            )
        )
        for base_id, fingerprint, manifest in bases:
            label = min(names[base_id]) if names[base_id] else (fingerprint or f"#{base_id}")
            for f in (manifest or {}).get("files", []):
                if isinstance(f, dict) and "sha256" in f:
                    out.size.setdefault(f["sha256"], int(f.get("size", 0)))
                    out.bases[f["sha256"]].append(f"base {label} {f.get('path', '?')}")
        # Signatures attached to a version or a base (their bundles are blobs gc keeps too).
        signatures = session.execute(
            select(m.VersionSignature.digest, m.VersionSignature.size, m.VersionSignature.purpose)
            .add_columns(m.Repository.namespace, m.Repository.name, m.Version.number)
            .add_columns(m.VersionSignature.base_id)
            .outerjoin(m.Version, m.Version.id == m.VersionSignature.version_id)
            .outerjoin(m.Repository, m.Repository.id == m.Version.repository_id)
        )
        for digest, size, purpose, ns, name, number, base_id in signatures:
            out.size.setdefault(digest, size)
            if number is not None:
                ref = f"{ns}/{name}:{number}"
                out.versions[digest].append(f"{ref} ({purpose})")
                out.version_of[digest].add(ref)
            else:
                label = min(names[base_id]) if names[base_id] else f"#{base_id}"
                out.bases[digest].append(f"base {label} ({purpose})")
    return out


def _problem(reg: Registry, blob: StoredBlob, size: int, verify: bool) -> tuple[str, int | None] | None:
    if blob.size != size:
        return "size_mismatch", blob.size
    if not verify:
        return None
    h = hashlib.sha256()
    try:
        for chunk in reg.store.open(blob.digest):
            h.update(chunk)
    except store_errors() as err:
        raise from_storage_error(err) from err
    return None if h.hexdigest() == digest_hex(blob.digest) else ("corrupt", blob.size)
