"""Signed provenance of what workers make (issue 27): an in-toto statement with a SLSA v1
predicate (the job, its parameters, its inputs and bases by digest, the worker, the library
versions), signed with the worker's key as a Sigstore bundle, stored beside the output (a
version's or a base's attached bundles, services/signatures.py) in the publishing transaction.
A merged version also gets a model-signing signature over its files by the same key, so a pulled
merge passes `model_signing verify` with the worker's public key.

The key: ADAPTERS_WORKER_SIGNING_KEY or ADAPTERS_WORKER_SIGNING_KEY_FILE, else one made once per
home ($ADAPTERS_HOME/worker-signing-key.pem, mode 0600); `adapters worker key` prints its public key.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.config import Settings
from registry.db import models as m
from registry.errors import BadRequest
from registry.formats.manifest import FileEntry, manifest_digest
from registry.formats.signing import (
    STATEMENT_TYPE,
    Signer,
    files_statement,
    key_fingerprint,
    load_private_key,
    sign_statement,
)
from registry.jobspec import ExportResult, MergeResult
from registry.services import signatures
from storage.atomic import write_atomic

KEY_FILE = "worker-signing-key.pem"
SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://adapter-registry.dev/jobs/{type}@v1"
BUILDER = "https://adapter-registry.dev/worker/{fingerprint}"
LIBRARIES = ("adapter-registry", "torch", "peft", "safetensors", "transformers", "bitsandbytes")


def worker_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """The workers' signing key: given (inline or as a file), else this home's, made on first use.

    Raises:
        BadRequest: both settings given, or a file that cannot be read.
        InvalidSignature: not an unencrypted P-256/384/521 PEM private key.
    """
    given, path = settings.worker_signing_key, settings.worker_signing_key_file
    if given is not None and path is not None:
        raise BadRequest(
            "ADAPTERS_WORKER_SIGNING_KEY and ADAPTERS_WORKER_SIGNING_KEY_FILE are both set: keep one",
            setting="ADAPTERS_WORKER_SIGNING_KEY_FILE",
        )
    if given is not None:
        return load_private_key(given.get_secret_value().encode(), "ADAPTERS_WORKER_SIGNING_KEY")
    if path is not None:
        try:
            return load_private_key(path.read_bytes(), f"ADAPTERS_WORKER_SIGNING_KEY_FILE {path}")
        except OSError as err:
            raise BadRequest(
                f"ADAPTERS_WORKER_SIGNING_KEY_FILE {path}: {err.strerror or err}",
                setting="ADAPTERS_WORKER_SIGNING_KEY_FILE",
            ) from err
    own = settings.home / KEY_FILE
    if not own.exists():
        _make_key(own)
    return load_private_key(own.read_bytes(), str(own))


def _make_key(path: os.PathLike[str]) -> None:
    """A new P-256 key, written atomically and never over another worker's (link, not rename)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileExistsError):  # a worker beside us that made one first keeps its own
        write_atomic(Path(path), pem, mode=0o600, exclusive=True)


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True)
class Inputs:
    """What a job read: SLSA `resolvedDependencies` ({name, uri, digest: {sha256}})."""

    dependencies: list[dict[str, Any]] = field(default_factory=list)


def dependency(kind: str, name: str, digest: str) -> dict[str, Any]:
    return {
        "name": name,
        "uri": f"adapter-registry:{kind}/{name}",
        "digest": {"sha256": digest.removeprefix("sha256:")},
    }


def libraries() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def statement(
    key: ec.EllipticCurvePrivateKey,
    job: dict[str, Any],
    subject: tuple[str, str],
    inputs: Inputs,
    worker: str,
) -> dict[str, Any]:
    """The in-toto statement: `subject` (name, sha256:<hex>) made by `job` from `inputs`."""
    name, digest = subject
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": SLSA_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE.format(type=job["type"]),
                "externalParameters": job["params"],
                "internalParameters": {"job_id": job["id"], "attempt": job["attempt"]},
                "resolvedDependencies": inputs.dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER.format(fingerprint=key_fingerprint(key.public_key())),
                    "version": libraries(),
                },
                "metadata": {
                    "invocationId": f"job-{job['id']}-attempt-{job['attempt']}",
                    "worker": worker,
                    "finishedOn": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                },
            },
        },
    }


def attach(
    session: Session,
    reg_store: Any,
    key: ec.EllipticCurvePrivateKey,
    job: dict[str, Any],
    output: MergeResult | ExportResult,
    inputs: Inputs,
    worker: str | None,
) -> None:
    """Inside the publishing transaction: sign and attach the provenance of `output` (and, for a
    version, a model-signing signature over its files)."""
    signer = Signer("key", key_fingerprint(key.public_key()))
    who = worker or socket.gethostname()
    common = {"checked": True, "created_by": f"worker:{who}", "job_id": job["id"]}
    if isinstance(output, MergeResult):
        version = session.scalars(
            select(m.Version)
            .join(m.Repository, m.Repository.id == m.Version.repository_id)
            .where(
                m.Repository.namespace == output.repo.split("/", 1)[0],
                m.Repository.name == output.repo.split("/", 1)[1],
                m.Version.number == output.version,
            )
        ).one()
        files = [FileEntry(f.path, f.size, f.digest) for f in version.files]
        bundles = [
            (signatures.SIGNATURE, sign_statement(files_statement(files, output.repo), key)),
            (
                signatures.PROVENANCE,
                sign_statement(statement(key, job, (output.ref, version.digest), inputs, who), key),
            ),
        ]
        for purpose, raw in bundles:
            digest = signatures.store_bundle(reg_store, raw)
            signatures.attach_bundle(
                session, reg_store, raw, digest, signer, purpose=purpose, version_id=version.id, **common
            )
    else:
        entries = [FileEntry(f.path, f.size, f.sha256) for f in output.files]
        subject = (f"base:{output.fingerprint or output.base_id}", manifest_digest(entries))
        raw = sign_statement(statement(key, job, subject, inputs, who), key)
        digest = signatures.store_bundle(reg_store, raw)
        signatures.attach_bundle(
            session,
            reg_store,
            raw,
            digest,
            signer,
            purpose=signatures.PROVENANCE,
            base_id=output.base_id,
            **common,
        )
