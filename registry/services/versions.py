"""Committing versions and resolving references."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.access.checks import (
    blobs_unusable,
    require_reader_of,
    require_writer_of,
)
from registry.access.policy import readable_namespaces
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import insert_ignoring_duplicates, unit_of_work
from registry.entities import (
    EvalScoreIn,
    PushRequest,
    PushResult,
    VersionInfo,
)
from registry.errors import BlobMissing, InvalidSignature
from registry.formats.inspect import AdapterFacts, inspect_files
from registry.formats.manifest import FileEntry, manifest_digest
from registry.formats.peft_config import canonical_config
from registry.formats.signing import SIGNATURE_MAX_BYTES, SIGNATURE_NAME, Verified, check_pushed
from registry.formats.training import TrainingRecord, read_training
from registry.reads import find_version
from registry.reads.entity import as_entity
from registry.reads.session import SessionDriver
from registry.reads.version import version_doc
from registry.refs import Ref, RepoName, check_alias, parse_repo
from registry.services import audit, signatures
from registry.services.aliases import point_alias
from registry.services.base_link import BaseLink, link_and_check, shape_key
from registry.services.blob_guard import guard_blobs, share_gc_lock
from registry.services.blobs import read_listed
from registry.services.context import Registry
from registry.services.evaluations import record_scores
from registry.services.lineage_edges import checked_lineage, record_edges
from registry.services.names import refuse_base_name
from registry.services.timeutil import now

OnCommit = Callable[[Session, PushResult], None]


def commit_version(
    reg: Registry,
    repo_text: str,
    req: PushRequest,
    pushed_by: str,
    on_commit: OnCommit | None = None,
    *,
    principal: Principal,
) -> PushResult:
    """Validate the pushed files from the stored blobs, then record a new version atomically.

    Every listed blob must already be in the store with the listed size; the server re-runs every
    push check on the stored bytes (it is the authority). Nothing is written on refusal.
    `on_commit` runs inside the same transaction (a worker's fenced job completion): if it raises,
    the version is not recorded either.

    `principal` must be allowed to write the repository's namespace, and may reference only blobs it may
    read or uploaded itself (an unusable blob is answered as a missing one: no digest oracle).
    """
    repo = parse_repo(repo_text)
    aliases = [check_alias(a) for a in req.aliases]
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, repo)
        unusable = set(blobs_unusable(session, principal, [f.sha256 for f in req.files]))
    checked = _check(reg, req, aliases, unusable)
    with unit_of_work(reg.sessions) as session:
        guard_blobs(session, reg.store, [(f.path, f.sha256, f.size) for f in checked.files])
        return _record(session, repo, checked, pushed_by, on_commit, principal)


def commit_on_latest(
    reg: Registry,
    repo_text: str,
    build: Callable[[Session], PushRequest],
    pushed_by: str,
    *,
    principal: Principal,
) -> PushResult:
    """Record a version made from whatever version is latest: lock the repository, then `build`
    the request (reading the latest in the session it is given), check and record it, all in one
    transaction. Such commits to one repository are serialised by its lock (on SQLite, by the
    single writer), so each applies to the one before it and none is refused for a race.

    The checks read blobs under the lock, which `commit_version` avoids: this is for a commit that
    must apply to the latest and already lost the optimistic race once (a Hub commit without
    `parentCommit`), not a first try. Nothing is written on refusal.
    """
    repo = parse_repo(repo_text)
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, repo)
        # gc's lock before the repository's, the order commit_version takes them in: a commit
        # waiting for this repository must not hold what a waiting gc run blocks us on.
        share_gc_lock(session)
        _lock_repository(session, repo)
        req = build(session)
        aliases = [check_alias(a) for a in req.aliases]
        unusable = set(blobs_unusable(session, principal, [f.sha256 for f in req.files]))
        checked = _check(reg, req, aliases, unusable)
        guard_blobs(session, reg.store, [(f.path, f.sha256, f.size) for f in checked.files])
        return _record(session, repo, checked, pushed_by, None, principal)


class _Checked(NamedTuple):
    """A push request whose stored files passed every push check."""

    req: PushRequest
    files: list[FileEntry]
    aliases: list[str]
    facts: AdapterFacts
    digest: str
    training: TrainingRecord
    signature: Verified | None
    bundle: bytes | None
    """The pushed model.sig's bytes, for the namespace's signing policy (signatures.enforce_push)."""


def _check(reg: Registry, req: PushRequest, aliases: list[str], unusable: set[str]) -> _Checked:
    """Every listed blob stored with its size and usable by the pusher, then every push check on
    the stored bytes (the server is the authority)."""
    files = [FileEntry(f.path, f.size, f.sha256) for f in req.files]
    for f in files:
        info = reg.store.stat(f.sha256)
        if info is None or info.size != f.size or f.sha256 in unusable:
            raise BlobMissing(
                f"{f.path}: blob {f.sha256} ({f.size} bytes) is not in the store; upload it first",
                path=f.path,
                digest=f.sha256,
            )

    def read(e: FileEntry, start: int, n: int) -> bytes:
        return read_listed(reg.store, e.path, e.sha256, start, n)

    facts = inspect_files(files, read, reg.limits)
    sig = next((f for f in files if f.path == SIGNATURE_NAME), None)
    if sig is not None and sig.size > SIGNATURE_MAX_BYTES:  # before a byte of it is read
        raise InvalidSignature(f"{sig.path} is larger than {SIGNATURE_MAX_BYTES} bytes", path=sig.path)
    bundle = read(sig, 0, sig.size) if sig is not None else None
    signed = check_pushed(bundle, files, req.signer_key) if bundle is not None else None
    training = read_training(files, read)
    return _Checked(req, files, aliases, facts, manifest_digest(files), training, signed, bundle)


def _record(
    session: Session,
    repo: RepoName,
    checked: _Checked,
    pushed_by: str,
    on_commit: OnCommit | None,
    principal: Principal,
) -> PushResult:
    """Inside the commit's transaction (its blobs guarded against gc): link the base, lock the
    repository, and record a new version, or none when the content equals the latest."""
    req, files, aliases, facts, digest, training, signature, bundle = checked
    signatures.enforce_push(session, repo.namespace, files, bundle, aliases)
    link = link_and_check(
        session, facts, req.base or facts.config.base_model_name_or_path, req.force, principal
    )
    repository = _lock_repository(session, repo)
    latest = _latest(session, repository)
    same = None if latest is None else _same_content(latest, digest, files, facts)
    if latest is not None and same is not None:
        for alias in aliases:
            point_alias(session, repository, latest, alias)
        session.flush()
        result = _result(
            session,
            principal,
            latest,
            created=False,
            detail=same.format(ref=f"{repo}:{latest.number}") + "; no new version created",
        )
    else:
        # Numbers come from the counter, never from the latest that exists: a deleted
        # version's number is never given again.
        repository.version_counter = max(repository.version_counter, repository.latest_version) + 1
        repository.latest_version = repository.version_counter
        version = _new_version(
            session, repository, digest, files, facts, req, pushed_by, link, principal, training, signature
        )
        for alias in aliases:
            point_alias(session, repository, version, alias)
        session.flush()
        result = _result(session, principal, version, created=True, detail=f"created {repo}:{version.number}")
    audit.record(
        session,
        principal,
        "push",
        f"{repo}:{result.version}",
        {"digest": result.digest, "created": result.created, "aliases": aliases},
        repo=str(repo),
    )
    if on_commit is not None:
        on_commit(session, result)
    return result


def _same_content(latest: m.Version, digest: str, files: list[FileEntry], facts: AdapterFacts) -> str | None:
    """How a push equals the latest version (the detail, with `{ref}`), or None when it does not: the
    same files, or the same files but an adapter_config.json that differs only in the order of what
    PEFT reads as sets (`save_pretrained` writes target_modules in set order: re-saving the same
    adapter made a new version of it)."""
    if latest.digest == digest:
        return "content equals {ref}"
    config = "adapter_config.json"
    theirs = {(f.path, f.digest) for f in latest.files if f.path != config}
    ours = {(f.path, f.sha256) for f in files if f.path != config}
    if theirs != ours or len(latest.files) != len(files):
        return None
    ours_cfg, theirs_cfg = canonical_config(facts.config.raw), canonical_config(latest.config)
    if ours_cfg != theirs_cfg:
        return None
    moved = sorted(k for k in ours_cfg if facts.config.raw.get(k) != latest.config.get(k))
    return (
        "same weights and files as {ref}; adapter_config.json differs only in the order of "
        f"{', '.join(moved)} (sets to PEFT)"
    )


def _lock_repository(session: Session, repo: RepoName) -> m.Repository:
    """Get or create the repository row and lock it: the lock makes version numbers gap-free."""
    stmt = (
        select(m.Repository)
        .where(m.Repository.namespace == repo.namespace, m.Repository.name == repo.name)
        .with_for_update()
    )
    row = session.scalars(stmt).one_or_none()
    if row is not None:
        return row
    refuse_base_name(session, repo)
    try:
        with session.begin_nested():
            session.add(
                m.Repository(namespace=repo.namespace, name=repo.name, created_at=now(), latest_version=0)
            )
    except IntegrityError:
        pass  # another push created it first; lock theirs
    return session.scalars(stmt).one()


def _latest(session: Session, repository: m.Repository) -> m.Version | None:
    if repository.latest_version == 0:
        return None
    return session.scalars(
        select(m.Version).where(
            m.Version.repository_id == repository.id, m.Version.number == repository.latest_version
        )
    ).one()


def _new_version(
    session: Session,
    repository: m.Repository,
    digest: str,
    files: list[FileEntry],
    facts: AdapterFacts,
    req: PushRequest,
    pushed_by: str,
    link: BaseLink,
    principal: Principal,
    training: TrainingRecord,
    signature: Verified | None = None,
) -> m.Version:
    cfg = facts.config
    # The pushed lineage is a claim: only parents the pusher may read become indexed edges.
    lineage, edges = checked_lineage(session, req.lineage, principal)
    record_blobs(session, files)
    version = m.Version(
        repository_id=repository.id,
        number=repository.latest_version,
        digest=digest,
        manifest={
            "files": [vars(f) for f in sorted(files, key=lambda f: f.path)],
            **({"training": training.facts} if training.facts else {}),
            **({"signatures": [_signature_doc(signature)]} if signature else {}),
        },
        peft_type=cfg.peft_type,
        task_type=cfg.task_type,
        config=cfg.raw,
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        target_modules=cfg.target_modules,
        lora_dropout=cfg.lora_dropout,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        trainable_params=facts.trainable_params,
        adapter_bytes=facts.adapter_bytes,
        total_bytes=facts.total_bytes,
        base_model_name=req.base or cfg.base_model_name_or_path,
        base_model_revision=req.base_revision or (cfg.revision if not req.base else None),
        task=req.task,
        message=req.message,
        pushed_by=pushed_by,
        created_at=now(),
        lineage=lineage,
        base_model_id=link.base.id if link.base else None,
        fit_override=link.override,
    )
    session.add(version)
    session.flush()
    # Executemany inserts, not one ORM object a row: thousands of modules cost milliseconds.
    modules = [
        {
            "version_id": version.id,
            "name": mod.name,
            "in_features": mod.in_features,
            "out_features": mod.out_features,
            "rank": mod.rank,
            "shape_key": shape_key(mod.name, mod.in_features, mod.out_features),
            "unlinked": link.base is None,
            "module_count": len(link.modules),
        }
        for mod in link.modules
    ]
    if modules:
        session.execute(insert(m.VersionModule), modules)
    session.execute(
        insert(m.VersionFile),
        [{"version_id": version.id, "path": f.path, "size": f.size, "digest": f.sha256} for f in files],
    )
    # Push-time scores open the same append-only history `adapters eval add` extends: what the
    # files report first (the card's, then the Trainer's in step order), the pusher's --eval last,
    # so that an explicit score is the current one.
    for reported in training.scores:
        try:
            score = EvalScoreIn(
                metric=reported.metric, value=reported.value, dataset=reported.dataset, split=reported.split
            )
        except ValidationError:
            continue  # a name the history cannot hold (a key with ':' ...): the file keeps it
        record_scores(session, version.id, [score], pushed_by, reported.note, at=version.created_at)
    record_scores(session, version.id, req.evals, pushed_by, None, at=version.created_at)
    record_edges(session, lineage, child_version_id=version.id, edges=edges)
    return version


def _signature_doc(signed: Verified) -> dict[str, Any]:
    """What a version records of its model.sig (in its manifest document: no column of its own)."""
    s = signed.signer
    return {
        "path": SIGNATURE_NAME,
        "kind": s.kind,
        "fingerprint": s.fingerprint,
        "identity": s.identity,
        "checked": signed.signature_checked,
    }


def record_blobs(session: Session, files: list[FileEntry]) -> None:
    """Insert the blob rows that do not exist yet. Pushes to different repositories often share
    a new file (a README, a tokenizer): a read-then-insert lost that race with a duplicate key
    (2 of 6 concurrent CLI pushes in the probe), so the insert itself skips existing rows."""
    rows = [
        {"digest": d, "size": size, "created_at": now()}
        for d, size in sorted({f.sha256: f.size for f in files}.items())
    ]
    insert_ignoring_duplicates(session, m.Blob, rows)


def _result(
    session: Session, reader: Principal, version: m.Version, created: bool, detail: str
) -> PushResult:
    info = version_info(session, version, reader=reader)
    return PushResult(
        created=created, repo=info.repo, version=info.version, digest=info.digest, detail=detail, info=info
    )


def resolve(reg: Registry, ref: Ref, *, principal: Principal) -> VersionInfo:
    """The version `ref` names. Raises NotFound when it does not exist or `principal` may not read it."""
    with unit_of_work(reg.sessions) as session:
        require_reader_of(session, principal, ref.repo, str(ref))
        vid, _, _ = find_version(SessionDriver(session), ref)
        return _info(session, vid, principal)


def version_info(session: Session, v: m.Version, *, reader: Principal) -> VersionInfo:
    return _info(session, v.id, reader)


def _info(session: Session, version_id: int, reader: Principal) -> VersionInfo:
    """registry.reads.version_doc (the SQL and mapper `adapters show` runs on the embedded file),
    read in `session` (its own writes included), as the entity."""
    doc = version_doc(SessionDriver(session), version_id, readable=readable_namespaces(reader))
    return as_entity(VersionInfo, doc)
