"""Sign a stored version from the client, and verify a worker's provenance offline (issue 27).

`sign_stored` builds model-signing's statement from the digests the server lists and signs it
here with the user's private key (which never leaves this machine); the server checks the bundle
against the version's files before attaching it. `verify_provenance` checks a version's
provenance statement against keys trusted here, and that its subject is the version's digest
recomputed from the listed files: neither the server nor its database is trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from registry.client.verify import fetch_bundle
from registry.entities import SignatureInfo, SignRequest
from registry.errors import InvalidSignature, UntrustedSignature
from registry.formats.manifest import FileEntry, manifest_digest
from registry.formats.signing import (
    SIGNATURE_NAME,
    files_statement,
    key_fingerprint,
    key_of,
    load_private_key,
    open_bundle,
    sign_statement,
    verify_envelope,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from registry.client.interface import RegistryClient
    from registry.entities import VersionInfo

SLSA_PREDICATE = "https://slsa.dev/provenance/v1"


def sign_stored(
    client: RegistryClient, ref: str, key: Path, certificate: Path | None = None
) -> tuple[VersionInfo, SignatureInfo]:
    """Sign the version `ref` names with the PEM private key `key` (and its certificate) and
    attach the bundle; the version's files and digest do not change."""
    from cryptography.hazmat.primitives import serialization

    private = load_private_key(key.read_bytes(), str(key))
    cert = None
    if certificate is not None:
        try:
            cert = x509.load_pem_x509_certificate(certificate.read_bytes())
        except ValueError as err:
            raise InvalidSignature(f"{certificate} is not a PEM certificate: {err}") from err
    info = client.resolve(ref)
    files = [FileEntry(f.path, f.size, f.sha256) for f in info.files if f.path != SIGNATURE_NAME]
    bundle = sign_statement(files_statement(files, info.repo), private, cert)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    req = SignRequest(bundle=bundle.decode(), signer_key=public.decode())
    return info, client.sign_version(f"{info.repo}:{info.version}", req)


def verify_provenance(
    client: RegistryClient, ref: str, keys: list[EllipticCurvePublicKey]
) -> tuple[VersionInfo, dict[str, Any], str]:
    """The version's provenance statement, signed by one of `keys`, about this very version.

    Returns (version, the statement's predicate, the signer's fingerprint).

    Raises:
        UntrustedSignature: no provenance, or none by a trusted key.
        InvalidSignature: a forged statement, or one about other content than the files listed.
    """
    info = client.resolve(ref)
    rows = [s for s in info.signatures if s.purpose == "provenance" and s.digest]
    if not rows:
        raise UntrustedSignature(
            f"{info.repo}:{info.version} has no provenance statement (not made by a job)"
        )
    digest = manifest_digest([FileEntry(f.path, f.size, f.sha256) for f in info.files])
    if digest != info.digest:
        raise InvalidSignature(
            f"{info.repo}:{info.version}: the listed files do not make its digest {info.digest}"
        )
    trusted = {key_fingerprint(k) for k in keys}
    failures: list[InvalidSignature] = []
    for row in reversed(rows):
        env = open_bundle(
            fetch_bundle(client, FileEntry("provenance", row.size or 0, row.digest or "")), "provenance"
        )
        if env.signer.fingerprint not in trusted:
            failures.append(
                UntrustedSignature(
                    f"the provenance of {info.repo}:{info.version} is signed by {env.signer.describe()}, "
                    "which is not among the trusted keys (`adapters worker key` prints a worker's)",
                    signer=env.signer.fingerprint,
                )
            )
            continue
        key = key_of(env, keys)
        assert key is not None
        verify_envelope(env, key, "provenance")
        st = env.statement
        subjects = st.get("subject")
        if st.get("predicateType") != SLSA_PREDICATE or not isinstance(subjects, list) or len(subjects) != 1:
            raise InvalidSignature("the provenance is not one SLSA v1 statement about one subject")
        if subjects[0].get("digest", {}).get("sha256") != digest.removeprefix("sha256:"):
            raise InvalidSignature(
                f"the provenance is about {subjects[0].get('name')} "
                f"(sha256:{subjects[0].get('digest', {}).get('sha256')}), not {info.repo}:{info.version} ({digest})"
            )
        return info, st.get("predicate") or {}, env.signer.fingerprint
    raise failures[0]
