"""Signatures attached to stored versions, workers' provenance statements, and namespace signing
policies (issue 27).

A signature attached with `adapters sign` is a model-signing bundle over a version's files, kept as
a blob beside them (like an OCI referrer): the version's files and digest are unchanged, and the
bundle is served as model.sig when the version has none of its own. A namespace's policy names
trusted public keys; with `require_signature` every push, Hub commit and alias move needs a bundle
that verifies with one of them (not revoked), and `signed_aliases` restricts only those aliases.
The checks are registry/formats/signing.py's, on the stored bundle bytes, never on recorded flags.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.access.checks import require_namespace, require_reader_of, require_writer_of
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import insert_ignoring_duplicates, read_only, unit_of_work
from registry.entities import NamespacePolicy, PolicyChange, SignatureInfo, SignRequest, TrustedKeyInfo
from registry.errors import BadRequest, InvalidSignature, NotFound, SignatureRequired
from registry.formats.manifest import FileEntry
from registry.formats.signing import (
    SIGNATURE_MAX_BYTES,
    SIGNATURE_NAME,
    Signer,
    check_pushed,
    check_signature,
    key_fingerprint,
    load_public_key,
)
from registry.refs import Ref, check_alias, parse_repo
from registry.services import audit
from registry.services.blob_guard import guard_blobs
from registry.services.blobs import read_listed
from registry.services.context import Registry
from registry.services.lookup import resolve_row
from registry.services.timeutil import now
from storage import BlobStore

SIGNATURE = "signature"
PROVENANCE = "provenance"


# ---------------------------------------------------------------- attached signatures
def sign_version(reg: Registry, ref: Ref, req: SignRequest, *, principal: Principal) -> SignatureInfo:
    """Attach a model-signing bundle to the version `ref` names (writers of its namespace). The
    bundle must list exactly the version's files; with `signer_key` its signature is checked too.
    Signing the same bundle twice attaches it once.

    Raises:
        InvalidSignature, SignatureMismatch: nothing is attached.
    """
    raw = req.bundle.encode()
    with unit_of_work(reg.sessions) as session:
        require_writer_of(session, principal, ref.repo)
        version = resolve_row(session, ref)
        verified = check_pushed(raw, _entries(version), req.signer_key)
    digest = store_bundle(reg.store, raw)
    with unit_of_work(reg.sessions) as session:
        version = resolve_row(session, Ref(ref.repo, version=version.number))
        row = attach_bundle(
            session,
            reg.store,
            raw,
            digest,
            verified.signer,
            checked=verified.signature_checked,
            created_by=principal.name,
            version_id=version.id,
        )
        audit.record(
            session,
            principal,
            "version.sign",
            f"{ref.repo}:{version.number}",
            {"digest": version.digest, "signature": digest, "fingerprint": verified.signer.fingerprint},
            repo=str(ref.repo),
        )
        return signature_info(row, revoked=False)


def store_bundle(store: BlobStore, raw: bytes) -> str:
    """Put a bundle in the blob store (verified like any blob) and return its digest."""
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if store.stat(digest) is None:
        store.put(io.BytesIO(raw), digest, len(raw))
    return digest


def attach_bundle(
    session: Session,
    store: BlobStore,
    raw: bytes,
    digest: str,
    signer: Signer,
    *,
    checked: bool,
    created_by: str,
    purpose: str = SIGNATURE,
    version_id: int | None = None,
    base_id: int | None = None,
    job_id: int | None = None,
) -> m.VersionSignature:
    """Inside the caller's transaction: record the stored bundle `digest` (guarded against a gc run
    sweeping it) as attached to a version or a base. Returns the row (an existing one if the same
    bundle is already attached)."""
    guard_blobs(session, store, [(SIGNATURE_NAME, digest, len(raw))])
    insert_ignoring_duplicates(session, m.Blob, [{"digest": digest, "size": len(raw), "created_at": now()}])
    existing = session.scalars(
        select(m.VersionSignature).where(
            m.VersionSignature.digest == digest,
            m.VersionSignature.version_id == version_id
            if version_id
            else m.VersionSignature.base_id == base_id,
        )
    ).first()
    if existing is not None:
        return existing
    row = m.VersionSignature(
        version_id=version_id,
        base_id=base_id,
        purpose=purpose,
        digest=digest,
        size=len(raw),
        signer_kind=signer.kind,
        fingerprint=signer.fingerprint,
        identity=signer.identity,
        checked=checked,
        job_id=job_id,
        created_by=created_by[:128],
        created_at=now(),
    )
    session.add(row)
    session.flush()
    return row


def attached(session: Session, version_ids: Iterable[int]) -> dict[int, list[m.VersionSignature]]:
    """The bundles attached to each version, oldest first (one query)."""
    out: dict[int, list[m.VersionSignature]] = {}
    rows = session.scalars(
        select(m.VersionSignature)
        .where(m.VersionSignature.version_id.in_(list(version_ids)))
        .order_by(m.VersionSignature.id)
    )
    for row in rows:
        out.setdefault(row.version_id or 0, []).append(row)
    return out


def base_provenance(session: Session, base_id: int) -> list[m.VersionSignature]:
    return list(
        session.scalars(
            select(m.VersionSignature)
            .where(m.VersionSignature.base_id == base_id)
            .order_by(m.VersionSignature.id)
        )
    )


def signature_info(row: m.VersionSignature, *, revoked: bool) -> SignatureInfo:
    return SignatureInfo(
        path=SIGNATURE_NAME if row.purpose == SIGNATURE else "provenance.sigstore.json",
        kind=row.signer_kind,
        fingerprint=row.fingerprint,
        identity=row.identity,
        checked=row.checked,
        attached=True,
        purpose=row.purpose,
        digest=row.digest,
        size=row.size,
        created_by=row.created_by,
        job_id=row.job_id,
        revoked=revoked,
    )


# ---------------------------------------------------------------- policies
def get_policy(reg: Registry, namespace: str, *, principal: Principal) -> NamespacePolicy:
    """The namespace's signing policy (readers of the namespace)."""
    parse_repo(f"{namespace}/x")
    with read_only(reg.sessions) as session:
        require_reader_of(session, principal, parse_repo(f"{namespace}/x"))
        return _policy(session, namespace)


def set_policy(
    reg: Registry, namespace: str, change: PolicyChange, *, principal: Principal
) -> NamespacePolicy:
    """Change the namespace's signing policy (admins of the namespace); audited.

    Raises:
        BadRequest: a signature required with no trusted key left, or a revoked key trusted again.
        NotFound: a key to revoke that the namespace does not trust.
        InvalidSignature: a key that is not a P-256/384/521 public key or certificate.
    """
    parse_repo(f"{namespace}/x")
    aliases = [check_alias(a) for a in change.signed_aliases] if change.signed_aliases is not None else None
    trust = [load_public_key(pem.encode(), "trusted key") for pem in change.trust_keys]
    with unit_of_work(reg.sessions) as session:
        require_namespace(
            session, principal, "admin", namespace, lambda: NotFound(f"no namespace {namespace!r}")
        )
        row = session.get(m.Namespace, namespace)
        if row is None:
            row = m.Namespace(name=namespace, public=False, updated_at=now())
            session.add(row)
        for key in trust:
            fp = key_fingerprint(key)
            known = session.get(m.TrustedKey, (namespace, fp))
            if known is not None and known.revoked_at is not None:
                raise BadRequest(
                    f"key {fp} was revoked in {namespace}; a revoked key is never trusted again: "
                    "make a new key and trust that",
                    field="trust_keys",
                )
            if known is None:
                session.add(
                    m.TrustedKey(
                        namespace=namespace,
                        fingerprint=fp,
                        public_key=_pem(key),
                        added_by=principal.name[:128],
                        added_at=now(),
                    )
                )
        session.flush()
        revoked = [_revoke(session, namespace, text) for text in change.revoke_keys]
        if change.require_signature is not None:
            row.require_signature = change.require_signature
        if aliases is not None:
            row.signed_aliases = aliases
        row.updated_at = now()
        session.flush()
        policy = _policy(session, namespace)
        # Requiring signatures before trusting any key is a mistake; revoking the last key is not
        # (fail closed: nothing satisfies the policy until a new key is trusted).
        if (policy.require_signature or policy.signed_aliases) and not policy.trusted_keys:
            raise BadRequest(
                f"{namespace} would require signatures but trusts no key: add one with --trust-key KEY.pub",
                field="trust_keys",
            )
        audit.record(
            session,
            principal,
            "namespace.policy",
            f"namespace:{namespace}",
            {
                "require_signature": change.require_signature,
                "signed_aliases": aliases,
                "trusted": [key_fingerprint(k) for k in trust],
                "revoked": revoked,
            },
            namespace=namespace,
        )
        return policy


def _revoke(session: Session, namespace: str, text: str) -> str:
    fp = (
        text.strip()
        if text.strip().startswith("sha256:")
        else key_fingerprint(load_public_key(text.encode()))
    )
    row = session.get(m.TrustedKey, (namespace, fp))
    if row is None:
        raise NotFound(
            f"{namespace} does not trust key {fp}; `adapters namespace show {namespace}` lists them"
        )
    if row.revoked_at is None:
        row.revoked_at = now()
    return fp


def _policy(session: Session, namespace: str) -> NamespacePolicy:
    row = session.get(m.Namespace, namespace)
    keys = session.scalars(
        select(m.TrustedKey).where(m.TrustedKey.namespace == namespace).order_by(m.TrustedKey.added_at)
    )
    return NamespacePolicy(
        namespace=namespace,
        require_signature=bool(row and row.require_signature),
        signed_aliases=list((row.signed_aliases if row else None) or []),
        trusted_keys=[TrustedKeyInfo.model_validate(k) for k in keys],
    )


def _pem(key: object) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _required(
    session: Session, namespace: str, aliases: Iterable[str]
) -> tuple[bool, list[EllipticCurvePublicKey]]:
    """Whether the policy asks for a signature here, and the keys that satisfy it (unrevoked)."""
    row = session.get(m.Namespace, namespace)
    if row is None:
        return False, []
    needed = row.require_signature or bool(set(aliases) & set(row.signed_aliases or []))
    if not needed:
        return False, []
    keys = session.scalars(
        select(m.TrustedKey.public_key).where(
            m.TrustedKey.namespace == namespace, m.TrustedKey.revoked_at.is_(None)
        )
    )
    return True, [load_public_key(pem.encode()) for pem in keys]


def enforce_push(
    session: Session, namespace: str, files: list[FileEntry], bundle: bytes | None, aliases: list[str]
) -> None:
    """A push (or Hub commit) into a namespace that requires signatures, or one that moves a
    signed-only alias, must carry a model.sig by a trusted, unrevoked key.

    Raises:
        SignatureRequired: nothing is recorded (the caller's transaction rolls back).
    """
    needed, keys = _required(session, namespace, aliases)
    if not needed:
        return
    if bundle is None:
        raise SignatureRequired(
            f"{namespace} requires versions signed by a trusted key; sign the folder "
            "(model_signing sign key DIR --private_key KEY --signature DIR/model.sig) and push again",
            namespace=namespace,
        )
    try:
        check_signature(bundle, files, keys, require_trusted=True)
    except InvalidSignature as err:
        raise SignatureRequired(
            f"{namespace} requires a signature by one of its trusted keys: {err.message}",
            namespace=namespace,
            signer=err.signer,
        ) from err


def enforce_alias(session: Session, store: BlobStore, version: m.Version, alias: str) -> None:
    """Moving `alias` to `version` where the policy restricts it: one of the version's bundles (its
    own model.sig or an attached one) must verify with a trusted, unrevoked key and list exactly
    its files. Read from the stored bundles, not from what was recorded at push time.

    Raises:
        SignatureRequired.
    """
    namespace = version.repository.namespace
    needed, keys = _required(session, namespace, [alias])
    if not needed:
        return
    files = _entries(version)
    bundles = [f for f in files if f.path == SIGNATURE_NAME] + [
        FileEntry(SIGNATURE_NAME, r.size, r.digest)
        for r in attached(session, [version.id]).get(version.id, [])
        if r.purpose == SIGNATURE
    ]
    why = "it has no signature"
    for b in bundles:
        if b.size > SIGNATURE_MAX_BYTES:  # not read: no signature is this large
            why = f"its {SIGNATURE_NAME} is larger than {SIGNATURE_MAX_BYTES} bytes"
            continue
        try:
            check_signature(
                read_listed(store, SIGNATURE_NAME, b.sha256, 0, b.size),
                files,
                keys,
                require_trusted=True,
            )
        except InvalidSignature as err:
            why = err.message
            continue
        return
    raise SignatureRequired(
        f"{version.repository.namespace}/{version.repository.name}@{alias} may point only at versions "
        f"signed by a trusted key; version {version.number}: {why} (`adapters sign REF --key KEY`)",
        namespace=namespace,
        alias=alias,
    )


def _entries(version: m.Version) -> list[FileEntry]:
    return [FileEntry(f.path, f.size, f.digest) for f in version.files]
