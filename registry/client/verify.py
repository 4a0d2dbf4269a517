"""Verify signed versions on the client, against keys the user trusts: not against the server.

`pull_verified` checks a version's model.sig (fetched first, by its digest) against the digests the
server lists before any file is written, then `write_files` checks every byte against those same
digests: a server that swaps a blob and its digest together fails the first check. `verify_folder`
checks a folder on disk the way `model_signing verify` does. The checks themselves are
registry/formats/signing.py's, the ones the server runs on push.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from registry.errors import (
    BadRequest,
    DigestMismatch,
    InvalidSignature,
    SymlinkRefused,
    UntrustedSignature,
)
from registry.formats.manifest import FileEntry
from registry.formats.signing import SIGNATURE_NAME, Verified, check_signature, load_public_key
from storage.base import sha256_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from registry.client.interface import RegistryClient, TransferProgress
    from registry.entities import VersionInfo

TRUSTED_KEYS_DIR = "trusted_keys"
"""Under the config folder ($XDG_CONFIG_HOME/adapter-registry): *.pub / *.pem files trusted always."""


def trusted_keys(paths: Iterable[Path], config_dir: Path | None = None) -> list[EllipticCurvePublicKey]:
    """The keys named (`--trust-key`, ADAPTERS_TRUSTED_KEYS) and those in CONFIG_DIR/trusted_keys.

    Raises:
        BadRequest: no key at all (a verification with nothing to trust is refused, not passed).
        InvalidSignature: a file that is not a P-256/384/521 public key or certificate.
    """
    files = list(paths)
    folder = config_dir / TRUSTED_KEYS_DIR if config_dir else None
    if folder is not None and folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in (".pub", ".pem") and p.is_file())
    if not files:
        raise BadRequest(
            "no trusted key: pass --trust-key KEY.pub, set ADAPTERS_TRUSTED_KEYS, or put the key in "
            f"{folder or 'the config folder'}"
        )
    return [load_public_key(p.read_bytes(), str(p)) for p in files]


def pull_verified(
    client: RegistryClient,
    ref: str,
    out: Path | None,
    keys: list[EllipticCurvePublicKey],
    *,
    force: bool = False,
    progress: TransferProgress | None = None,
) -> tuple[VersionInfo, Path, Verified]:
    """`transfer.pull`, with the version's signature checked against `keys` before a file is
    written.

    Raises:
        UntrustedSignature: the version has no model.sig (its own or attached), or a signer not
            among `keys`.
        InvalidSignature, SignatureMismatch: the signature or the listed files were altered.
    """
    from registry.client.transfer import served_files, write_files

    info = client.resolve(ref)
    verified = check_version(client, info, keys)
    out = out or Path.cwd() / info.repo.split("/")[1]
    return info, write_files(client, served_files(info), out, force=force, progress=progress), verified


def check_version(client: RegistryClient, info: VersionInfo, keys: list[EllipticCurvePublicKey]) -> Verified:
    """The version's signature (its own model.sig, else one attached by `adapters sign`), checked
    against `keys` and the files the server lists, before a byte of those files is fetched: what
    `pull --verify`, `sync --verify` and the vLLM resolver's ADAPTERS_VLLM_VERIFY rest on.

    Raises:
        UntrustedSignature: no signature, or a signer not among `keys`.
        InvalidSignature, SignatureMismatch: the signature or the listed files were altered.
    """
    files = [FileEntry(f.path, f.size, f.sha256) for f in info.files]
    bundles = [f for f in files if f.path == SIGNATURE_NAME] + [
        FileEntry(SIGNATURE_NAME, s.size or 0, s.digest)
        for s in info.signatures
        if s.attached and s.purpose == "signature" and s.digest
    ]
    if not bundles:
        raise UntrustedSignature(
            f"{info.repo}:{info.version} has no {SIGNATURE_NAME} and no attached signature; pull it "
            "without --verify if you trust the server",
            path=SIGNATURE_NAME,
        )
    failures: list[InvalidSignature] = []
    for bundle in bundles:  # its own model.sig first, then those attached (`adapters sign`)
        try:
            verified = check_signature(fetch_bundle(client, bundle), files, keys, require_trusted=True)
            break
        except InvalidSignature as err:
            failures.append(err)
    else:  # a mismatch or a forged signature says more than "signed by someone else"
        raise min(failures, key=lambda e: isinstance(e, UntrustedSignature))
    return verified


def fetch_bundle(client: RegistryClient, entry: FileEntry) -> bytes:
    """A signature or provenance bundle's bytes, by its digest, into the cache and checked."""
    from registry.client.transfer import fetch_missing

    fetch_missing(client, [entry], None)
    raw = b"".join(client.cache.open(entry.sha256))
    if "sha256:" + hashlib.sha256(raw).hexdigest() != entry.sha256:
        raise DigestMismatch(f"{entry.path} does not hash to {entry.sha256}", path=entry.path)
    return raw


def verify_folder(folder: Path, keys: list[EllipticCurvePublicKey]) -> Verified:
    """Check FOLDER/model.sig against `keys` and every file in the folder (as `model_signing
    verify` would: the signature and the git files it ignored left out).

    Raises:
        UntrustedSignature, InvalidSignature, SignatureMismatch; SymlinkRefused for a symlink.
    """
    sig = folder / SIGNATURE_NAME
    if not sig.is_file():
        raise UntrustedSignature(f"{folder} has no {SIGNATURE_NAME}", path=SIGNATURE_NAME)
    return check_signature(sig.read_bytes(), _hash_all(folder), keys, require_trusted=True)


def _hash_all(root: Path) -> list[FileEntry]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            full = here / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise SymlinkRefused(f"{rel} is a symlink; model-signing refuses them too", path=rel)
            if name in filenames:  # one reused buffer (storage.base.sha256_file): bench/signing.py
                info = sha256_file(str(full))
                entries.append(FileEntry(rel, info.size, info.digest))
    return entries
