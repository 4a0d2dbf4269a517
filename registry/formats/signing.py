"""OpenSSF model-signing signatures (`model.sig`): parse, verify, and match against a file list.

One implementation for the server's push check and the client's `pull --verify` / `verify DIR`.
The format is the one `model_signing sign key|certificate` writes (model-signing 1.x): a Sigstore
bundle (JSON) holding a DSSE envelope over an in-toto statement whose predicate lists every file
(`resources`: name, algorithm, hex digest) and the serialization used. Only the default
serialization (`files`, `sha256`) is accepted: its digests are the registry's blob digests, so a
version is checked without reading its bytes again. Pure: `cryptography` only, no model-signing
import, no torch.

A key bundle names its key only by a hint (sha256 of the public key's PEM): the signature is
checked when the key is at hand (a trusted key, or one given with the push). A certificate bundle
carries its certificate, so its signature is always checked; whether its issuer is trusted is the
verifier's policy, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.bounds import loads_strict
from registry.errors import InvalidSignature, SignatureMismatch, UntrustedSignature
from registry.formats.manifest import FileEntry
from registry.formats.paths import SIGNATURE_NAME

SIGNATURE_MAX_BYTES = 16 * 1024**2
"""A statement lists each file in ~150 bytes: 10,000 files (bounds.MAX_VERSION_FILES) are 1.5 MB."""

BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
DEFAULT_IGNORED = frozenset({SIGNATURE_NAME, ".git", ".gitattributes", ".github", ".gitignore"})
"""What model-signing leaves out of a statement by default: a version file among these is not
covered when the statement says it ignored it. Any other ignored path must not be a version file."""

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


@dataclass(frozen=True)
class Signer:
    """Who signed: `kind` is "key" or "certificate"; `fingerprint` is `sha256:<hex>` of the public
    key's PEM (SubjectPublicKeyInfo, model-signing's hint); `identity` is a certificate's subject
    (its SAN e-mail or URI when it has one), None for a bare key."""

    kind: str
    fingerprint: str
    identity: str | None = None

    def describe(self) -> str:
        return (
            f"certificate {self.identity} ({self.fingerprint})"
            if self.identity
            else f"key {self.fingerprint}"
        )


@dataclass(frozen=True)
class ParsedSignature:
    """A well-formed bundle: the signer, the statement's files (path -> `sha256:<hex>`), the paths
    the signer said it ignored, and what the DSSE check needs."""

    signer: Signer
    files: dict[str, str]
    ignored: frozenset[str]
    payload: bytes
    signature: bytes
    certificate: x509.Certificate | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Verified:
    """The outcome of `check_signature`: the signer, and whether its DSSE signature was checked
    against a key (False only for a key bundle whose key was not at hand)."""

    signer: Signer
    signature_checked: bool


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """model-signing's hint for a key: sha256 of its PEM SubjectPublicKeyInfo."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def load_public_key(pem: bytes, where: str = "public key") -> ec.EllipticCurvePublicKey:
    """A PEM public key (or a PEM certificate's key) of a curve model-signing signs with."""
    try:
        if b"BEGIN CERTIFICATE" in pem:
            key: Any = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError as err:
        raise InvalidSignature(f"{where} is not a PEM public key or certificate: {err}") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _CURVE_HASH:
        raise InvalidSignature(f"{where}: only P-256, P-384 and P-521 keys sign model-signing bundles")
    return key


def pae(payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of an in-toto payload (what is signed)."""
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A Sigstore bundle's DSSE envelope, read without trusting it: who it names, what it signs."""

    signer: Signer
    statement: dict[str, Any]
    payload: bytes
    signature: bytes
    certificate: x509.Certificate | None = field(default=None, repr=False)


def open_bundle(raw: bytes, where: str = SIGNATURE_NAME) -> Envelope:
    """The bundle's shape and its in-toto statement (any predicate): what model-signing
    signatures and the workers' provenance statements share.

    Raises:
        InvalidSignature: not a Sigstore v0.3 bundle over one in-toto statement.
    """
    if len(raw) > SIGNATURE_MAX_BYTES:
        raise InvalidSignature(f"{where} is larger than {SIGNATURE_MAX_BYTES} bytes", path=where)
    bundle = _obj(loads_strict(raw, where, InvalidSignature, max_depth=32, storable=False), where)
    if bundle.get("mediaType") not in BUNDLE_MEDIA_TYPES:
        _bad(where, f"mediaType {bundle.get('mediaType')!r} is not a Sigstore bundle v0.3")
    envelope = _obj(bundle.get("dsseEnvelope"), f"{where}: dsseEnvelope")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        _bad(where, f"payloadType {envelope.get('payloadType')!r} is not {PAYLOAD_TYPE}")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        _bad(where, "the envelope must hold exactly one signature")
    payload = _b64(envelope.get("payload"), where, "payload")
    signature = _b64(_obj(sigs[0], where).get("sig"), where, "signature")
    signer, certificate = _signer(
        _obj(bundle.get("verificationMaterial"), f"{where}: verificationMaterial"), where
    )
    statement = _obj(
        loads_strict(payload, f"{where}: payload", InvalidSignature, max_depth=32, storable=False), where
    )
    if statement.get("_type") != STATEMENT_TYPE:
        _bad(where, f"the payload is not an in-toto v1 statement ({statement.get('_type')!r})")
    return Envelope(signer, statement, payload, signature, certificate)


def key_of(
    envelope: Envelope | ParsedSignature, keys: Iterable[ec.EllipticCurvePublicKey]
) -> ec.EllipticCurvePublicKey | None:
    """The key that checks the envelope: whichever of `keys` it names, else its certificate's."""
    key = {key_fingerprint(k): k for k in keys}.get(envelope.signer.fingerprint)
    if key is None and envelope.certificate is not None:
        cert_key = envelope.certificate.public_key()
        if isinstance(cert_key, ec.EllipticCurvePublicKey) and cert_key.curve.name in _CURVE_HASH:
            return cert_key
        raise InvalidSignature("the certificate's key is not a P-256, P-384 or P-521 key")
    return key


def load_private_key(pem: bytes, where: str = "private key") -> ec.EllipticCurvePrivateKey:
    """A PEM private key (PKCS#8 or SEC1, unencrypted) of a curve model-signing signs with."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise InvalidSignature(f"{where} is not an unencrypted PEM private key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in _CURVE_HASH:
        raise InvalidSignature(f"{where}: only P-256, P-384 and P-521 keys sign model-signing bundles")
    return key


def files_statement(files: Iterable[FileEntry], name: str) -> dict[str, Any]:
    """The statement `model_signing sign` writes for these files (default serialization: files,
    sha256; the signature file and git files ignored), built from digests alone: a version already
    stored is signed without reading its bytes."""
    resources = [
        {"algorithm": "sha256", "name": f.path, "digest": f.sha256.removeprefix("sha256:")}
        for f in sorted(files, key=lambda f: f.path)
        if f.path.split("/", 1)[0] not in DEFAULT_IGNORED
    ]
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": resources,
            "serialization": {
                "hash_type": "sha256",
                "method": "files",
                "allow_symlinks": False,
                "ignore_paths": sorted(DEFAULT_IGNORED),
            },
        },
    }


def sign_statement(
    statement: dict[str, Any],
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate | None = None,
) -> bytes:
    """A Sigstore v0.3 bundle over `statement` as model-signing's key (or certificate) signer
    writes it: DSSE, ECDSA over the PAE with the curve's hash, the key named by its hint."""
    payload = json.dumps(statement, indent=2).encode()
    sig = key.sign(pae(payload), ec.ECDSA(_CURVE_HASH[key.curve.name]()))
    if certificate is not None:
        if key_fingerprint(certificate.public_key()) != key_fingerprint(key.public_key()):  # type: ignore[arg-type]
            raise InvalidSignature("the certificate is not the private key's")
        der = certificate.public_bytes(serialization.Encoding.DER)
        material: dict[str, Any] = {
            "x509CertificateChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()}]}
        }
    else:
        material = {"publicKey": {"hint": key_fingerprint(key.public_key()).removeprefix("sha256:")}}
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {**material, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle, indent=2).encode()


def parse_signature(raw: bytes, where: str = SIGNATURE_NAME) -> ParsedSignature:
    """Read a model-signing bundle without trusting it: shape, statement, root digest.

    Raises:
        InvalidSignature: not a bundle model-signing writes, or a serialization other than the
            default (`files`, `sha256`).
    """
    env = open_bundle(raw, where)
    statement = env.statement
    if statement.get("predicateType") != PREDICATE_TYPE:
        _bad(
            where, f"the statement is not a model-signing v1.0 statement ({statement.get('predicateType')!r})"
        )
    predicate = _obj(statement.get("predicate"), where)
    ser = _obj(predicate.get("serialization"), where)
    if ser.get("method") != "files" or ser.get("hash_type") != "sha256":
        raise InvalidSignature(
            f"{where}: serialization {ser.get('method')!r}/{ser.get('hash_type')!r} is not supported; "
            "sign with model-signing's default (files, sha256)",
            path=where,
        )
    ignored = ser.get("ignore_paths", [])
    if not isinstance(ignored, list) or not all(isinstance(p, str) for p in ignored):
        _bad(where, "serialization.ignore_paths is not a list of paths")
    files: dict[str, str] = {}
    root = hashlib.sha256()
    resources = predicate.get("resources")
    if not isinstance(resources, list):
        _bad(where, "predicate.resources is not a list")
    for item in resources:
        res = _obj(item, where)
        name, digest = res.get("name"), res.get("digest")
        if not isinstance(name, str) or not isinstance(digest, str) or res.get("algorithm") != "sha256":
            _bad(where, f"resource {res!r} is not a sha256 file entry")
        try:
            value = bytes.fromhex(digest)
        except ValueError:
            _bad(where, f"resource {name!r}: digest is not hex")
        if len(value) != 32 or name in files:
            _bad(where, f"resource {name!r}: a 32-byte digest, listed once")
        root.update(value)
        files[name] = "sha256:" + digest.lower()
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        _bad(where, "the statement must have exactly one subject")
    subject_digest = _obj(_obj(subjects[0], where).get("digest"), where).get("sha256")
    if subject_digest != root.hexdigest():
        _bad(where, "the subject's digest is not the digest of the listed resources")
    return ParsedSignature(env.signer, files, frozenset(ignored), env.payload, env.signature, env.certificate)


def verify_envelope(
    parsed: ParsedSignature | Envelope, key: ec.EllipticCurvePublicKey, where: str = SIGNATURE_NAME
) -> None:
    """The DSSE signature over the statement, checked with `key`."""
    if key_fingerprint(key) != parsed.signer.fingerprint:
        raise InvalidSignature(
            f"{where} was signed by {parsed.signer.describe()}, not by key {key_fingerprint(key)}",
            path=where,
            signer=parsed.signer.fingerprint,
        )
    try:
        key.verify(parsed.signature, pae(parsed.payload), ec.ECDSA(_CURVE_HASH[key.curve.name]()))
    except _CryptoInvalidSignature as err:
        raise InvalidSignature(
            f"{where}: the signature does not verify with {parsed.signer.describe()}; the statement "
            "or the signature was altered after signing",
            path=where,
            signer=parsed.signer.fingerprint,
        ) from err


def match_files(parsed: ParsedSignature, files: Iterable[FileEntry], where: str = SIGNATURE_NAME) -> None:
    """The statement lists exactly `files` (the signature file and the git files the signer
    ignored left out) with their sha256 digests.

    Raises:
        SignatureMismatch: naming the files missing, unsigned or changed.
    """
    exempt = parsed.ignored & DEFAULT_IGNORED
    have = {
        f.path: f.sha256
        for f in files
        if f.path != SIGNATURE_NAME and f.path not in exempt and f.path.split("/", 1)[0] not in exempt
    }
    missing = sorted(parsed.files.keys() - have.keys())
    unsigned = sorted(have.keys() - parsed.files.keys())
    changed = sorted(p for p in have.keys() & parsed.files.keys() if have[p] != parsed.files[p])
    if missing or unsigned or changed:
        parts = [
            f"{label}: {', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}"
            for label, paths in (
                ("changed", changed),
                ("not signed", unsigned),
                ("signed but absent", missing),
            )
            if paths
        ]
        raise SignatureMismatch(
            f"the files do not match {where} ({'; '.join(parts)}); sign the folder again with "
            "`model_signing sign ... --signature DIR/model.sig` after its last change",
            path=where,
            signer=parsed.signer.fingerprint,
            missing=missing,
            unsigned=unsigned,
            changed=changed,
        )


def check_signature(
    raw: bytes,
    files: Iterable[FileEntry],
    keys: Iterable[ec.EllipticCurvePublicKey] = (),
    *,
    require_trusted: bool = False,
    where: str = SIGNATURE_NAME,
) -> Verified:
    """Everything the server and the client check: well formed, the signature verifies (with the
    certificate it carries, or with whichever of `keys` it names), the files match. With
    `require_trusted`, the signer must be one of `keys` (by fingerprint; a certificate's key too).

    Raises:
        InvalidSignature, SignatureMismatch, UntrustedSignature.
    """
    parsed = parse_signature(raw, where)
    by_print = {key_fingerprint(k): k for k in keys}
    key = by_print.get(parsed.signer.fingerprint)
    if key is None and parsed.certificate is not None:
        cert_key = parsed.certificate.public_key()
        if isinstance(cert_key, ec.EllipticCurvePublicKey) and cert_key.curve.name in _CURVE_HASH:
            key = cert_key
        else:
            _bad(where, "the certificate's key is not a P-256, P-384 or P-521 key")
    if require_trusted and parsed.signer.fingerprint not in by_print:
        raise UntrustedSignature(
            f"{where} is signed by {parsed.signer.describe()}, which is not among the trusted keys; "
            "add it with --trust-key KEY.pub (or ADAPTERS_TRUSTED_KEYS) if you trust it",
            path=where,
            signer=parsed.signer.fingerprint,
        )
    if key is not None:
        verify_envelope(parsed, key, where)
    match_files(parsed, files, where)
    return Verified(parsed.signer, key is not None)


def check_pushed(raw: bytes, files: Iterable[FileEntry], signer_key: str | None = None) -> Verified:
    """The push check, on the client before upload and on the server on commit: `check_signature`
    with the PEM key sent with the push (`--signer-key`), which must then be the signer's.

    Raises:
        InvalidSignature, SignatureMismatch.
    """
    keys = [load_public_key(signer_key.encode(), "signer_key")] if signer_key else []
    verified = check_signature(raw, files, keys)
    if keys and not verified.signature_checked:
        raise InvalidSignature(
            f"{SIGNATURE_NAME} was signed by {verified.signer.describe()}, not by the key sent with "
            "the push (--signer-key)",
            path=SIGNATURE_NAME,
            signer=verified.signer.fingerprint,
        )
    return verified


def _signer(material: dict[str, Any], where: str) -> tuple[Signer, x509.Certificate | None]:
    public_key = material.get("publicKey")
    if isinstance(public_key, dict):
        hint = public_key.get("hint")
        if not isinstance(hint, str) or len(hint) != 64 or not all(c in "0123456789abcdef" for c in hint):
            _bad(where, "verificationMaterial.publicKey.hint is not a sha256 hex digest")
        return Signer("key", "sha256:" + hint), None
    chain = material.get("x509CertificateChain")
    if isinstance(chain, dict) and isinstance(chain.get("certificates"), list) and chain["certificates"]:
        der = _b64(_obj(chain["certificates"][0], where).get("rawBytes"), where, "certificate")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as err:
            raise InvalidSignature(
                f"{where}: the signing certificate does not parse: {err}", path=where
            ) from err
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            _bad(where, "the signing certificate's key is not an elliptic-curve key")
        return Signer("certificate", key_fingerprint(key), _identity(cert)), cert
    raise InvalidSignature(
        f"{where}: only key and certificate signatures are verified here (no Sigstore keyless bundles)",
        path=where,
    )


def _identity(cert: x509.Certificate) -> str:
    """A certificate's identity as a verifier names it: a SAN e-mail or URI, else its subject."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.RFC822Name) + san.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        if names:
            return str(names[0])
    except x509.ExtensionNotFound:
        pass
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else cert.subject.rfc4514_string()


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _bad(where, "expected a JSON object")
    return value


def _b64(value: Any, where: str, what: str) -> bytes:
    if not isinstance(value, str):
        _bad(where, f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidSignature(f"{where}: {what} is not base64", path=where) from err


def _bad(where: str, why: str) -> NoReturn:
    raise InvalidSignature(f"{where} is not a model-signing signature: {why}", path=where)
