"""The server side of Xet uploads (huggingface_hub 2.x with hf_xet, the default install): CAS
tokens, verified xorbs, and shards whose files become the registry's usual sha256 blobs, so that
the commit that follows (`hub_write.commit`, lfsFile entries named by sha256) runs unchanged.

- A CAS token is an HMAC (the server's key, as the LFS upload URLs) over who asked (user and token
  ids), the repository, the scope (read or write) and its expiry. Each CAS call acts as that user
  with today's rights narrowed as their token (`Uploader.principal`), and a write call needs write
  on the token's repository again: a revoked token or a lost grant stops the next call.
- A xorb is accepted only when its chunks, decompressed and hashed, rebuild the hash it is
  uploaded under (and its footer lists the same chunks). Xorbs are kept in the blob store, under
  its own `xet/` prefix, so replicas sharing the store share them (services/xet_store.py).
- A shard's files are checked against the xorbs they name (each term's verification hash over the
  stored chunk hashes, its length, the file's Xet hash over all its chunks); each file is then
  rebuilt from the xorbs, its sha256 checked against the shard's metadata, and stored through
  `blobs.upload_as`, which records the uploader's proof of possession. Raw chunk hashes are never
  disclosed by the registry (no xorb is served; dedupe answers list keyed hashes only), so a valid
  term is proof that the client holds those chunks, Xet's own rule for deduplicated ranges.
- The global dedupe query answers with the xorbs of files the caller may use, across versions and
  repositories (`xet_store.dedupe_answer`); gc reclaims xorbs no kept file names (`xet_store.reclaim`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from registry.access.principal import Principal
from registry.bounds import MAX_VERSION_FILES
from registry.errors import BadRequest, Forbidden, PushTooLarge, Unauthenticated
from registry.formats import xet as fmt
from registry.services import hub
from registry.services.blobs import missing_for, upload_as
from registry.services.context import Registry
from registry.services.hub_lfs import Signer, Uploader
from registry.services.xet_store import XorbStore, dedupe_answer, record_file

TOKEN_TTL_S = 900
"""A CAS token lives 15 minutes; hf_xet asks the token route again before it expires."""
SCOPES = ("read", "write")
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class CasToken:
    uploader: Uploader
    repo: str
    scope: str
    expires: int


class CasTokens:
    """Issues and checks CAS tokens: `xet.<base64url JSON claims>.<HMAC-SHA256 hex>`."""

    def __init__(self, key: bytes, ttl_s: int = TOKEN_TTL_S) -> None:
        self._signer = Signer(key + b"\nxet-cas", ttl_s)

    def issue(self, principal: Principal, repo: str, scope: str) -> tuple[str, int]:
        if principal.is_anonymous:
            # Its claims would name no user, which an Uploader reads as the operator's (in-process)
            # own: CAS tokens are for callers with a token of their own. Downloads stay on HTTP.
            raise Unauthenticated("Xet needs a token: pass one (HF_TOKEN) to use the Xet protocol")
        who = Uploader.of(principal)
        exp = self._signer.expiry()
        claims = {"u": who.fields[0], "t": who.fields[1], "r": repo, "s": scope, "e": exp}
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode()
        return f"xet.{body}.{self._signer.sign(exp, body)}", exp

    def check(self, token: str, scope: str) -> CasToken:
        """The claims of a token this server issued, unexpired, with at least `scope`.

        Raises:
            Unauthenticated: not a token of this server, or expired (hf_xet then asks for a new one).
            Forbidden: a read token used to write.
        """
        if len(token) > MAX_TOKEN_CHARS:  # ours are a few hundred characters
            raise Unauthenticated("not a CAS token this registry issued")
        try:
            prefix, body, sig = token.split(".")
            claims = json.loads(base64.urlsafe_b64decode(body.encode()))
            exp = int(claims["e"])
            ok = prefix == "xet" and secrets.compare_digest(self._signer.sign(exp, body), sig)
            who = Uploader(
                int(claims["u"]) if claims["u"] else None, int(claims["t"]) if claims["t"] else None
            )
            repo, granted = str(claims["r"]), str(claims["s"])
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as err:
            raise Unauthenticated("not a CAS token this registry issued") from err
        if not ok:
            raise Unauthenticated("not a CAS token this registry issued")
        if exp < time.time():
            raise Unauthenticated("the CAS token has expired; ask the xet token route for a new one")
        if scope == "write" and granted != "write":
            raise Forbidden("a read CAS token cannot upload; ask for a xet-write-token", action="write")
        return CasToken(who, repo, granted, exp)


def issue(
    reg: Registry, tokens: CasTokens, principal: Principal, repo_id: str, scope: str
) -> tuple[str, int]:
    """A CAS token for `repo_id`, once `principal` may write it (write scope) or read it (read).

    Raises:
        Unauthenticated, Forbidden, RepoNotFound: as the Hub's write (or read) path.
    """
    if scope == "write":
        hub.check_write(reg, principal, repo_id)
    else:
        hub.list_refs(reg, repo_id, principal)
    return tokens.issue(principal, repo_id, scope)


def dedupe(reg: Registry, token: CasToken, chunk_hex: str) -> bytes | None:
    """The dedupe query's answer for the token's user as of today (None: 404)."""
    return dedupe_answer(reg, token.uploader.principal(reg), chunk_hex)


def writer(reg: Registry, token: CasToken) -> Principal:
    """The principal a write token acts as, with write on its repository checked today."""
    principal = token.uploader.principal(reg)
    hub.check_write(reg, principal, token.repo)
    return principal


def put_shard(reg: Registry, principal: Principal, data: bytes, max_bytes: int, tmp: Path) -> int:
    """Check a shard against the stored xorbs and store each of its files as a sha256 blob (as
    `principal`, whose proof is recorded), remembering how each was rebuilt for the dedupe query.
    Nothing is stored unless every file checks out.

    Returns:
        1 (the spec's SyncPerformed).
    Raises:
        BadRequest: malformed, a xorb not uploaded, a term or file hash that does not match, a
            file without its sha256 (the commit names files by it).
        PushTooLarge: a file over ADAPTERS_MAX_PUSH_BYTES.
    """
    try:
        shard = fmt.parse_shard(data)
    except fmt.XetFormatError as err:
        raise BadRequest(f"shard refused: {err}") from err
    # What rebuilding would cost, bounded before any of it is done: a 30 KB shard can name a file
    # of 20 GiB made of one xorb over and over.
    if len(shard.files) > MAX_VERSION_FILES:
        raise BadRequest(
            f"shard refused: {len(shard.files)} files; a version holds at most {MAX_VERSION_FILES}"
        )
    total = sum(f.size for f in shard.files)
    if total > max_bytes:
        raise PushTooLarge(
            f"a shard of files totalling {total} bytes; the limit is {max_bytes} (ADAPTERS_MAX_PUSH_BYTES)",
            size=total,
            limit=max_bytes,
        )
    store = XorbStore(reg)
    named = {c.xorb for c in shard.xorbs} | {t.xorb for f in shard.files for t in f.terms}
    held = store.held(named)
    for cas in shard.xorbs:
        if [(h, s) for h, _, s in cas.chunks] != held[cas.xorb][0].chunks:
            raise BadRequest(f"shard refused: xorb {fmt.to_hex(cas.xorb)} holds other chunks than it lists")
    checked = [(f, _check_file(held, f, max_bytes)) for f in shard.files]
    for f, chunks in checked:
        assert f.sha256 is not None  # _check_file
        digest = "sha256:" + fmt.to_hex(f.sha256)  # stored as a Xet hash: its string form is the hex
        if missing_for(reg, principal, [digest]):
            _materialise(reg, store, held, principal, f, digest, tmp)
            # Only a reconstruction rebuilt and sha256-checked here joins the dedupe index: a file
            # the caller could already use is not rebuilt, and its claimed chunks prove nothing.
            record_file(reg, digest, f, chunks)
    return 1


Held = dict[bytes, tuple[fmt.Xorb, str]]


def _check_file(held: Held, f: fmt.FileInfo, max_bytes: int) -> list[tuple[bytes, int]]:
    """The file's chunks, once its terms and hash check out against the stored xorbs."""
    name = fmt.to_hex(f.hash)
    if f.sha256 is None:
        raise BadRequest(f"shard refused: file {name} carries no sha256 (a commit names files by it)")
    if f.size > max_bytes:
        raise PushTooLarge(
            f"a file of {f.size} bytes; the limit is {max_bytes} (ADAPTERS_MAX_PUSH_BYTES)",
            size=f.size,
            limit=max_bytes,
        )
    chunks: list[tuple[bytes, int]] = []
    for t in f.terms:
        if t.verification is None:
            raise BadRequest(f"shard refused: file {name} has no verification entries")
        xorb = held[t.xorb][0]
        if t.end > len(xorb.chunks):
            raise BadRequest(f"shard refused: file {name} names chunks past the end of a xorb")
        part = xorb.chunks[t.start : t.end]
        if fmt.verification_hash([h for h, _ in part]) != t.verification or sum(s for _, s in part) != t.size:
            raise BadRequest(f"shard refused: file {name}: a term does not match the chunks it names")
        chunks.extend(part)
    if fmt.file_hash(chunks) != f.hash:
        raise BadRequest(f"shard refused: file {name} is not the hash of its chunks")
    return chunks


def _materialise(
    reg: Registry, store: XorbStore, held: Held, principal: Principal, f: fmt.FileInfo, digest: str, tmp: Path
) -> None:
    """Rebuild the file from its xorbs (each term's byte range read from the store) into a
    temporary file, check its sha256, store it."""
    tmp.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp, prefix="file-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for t in f.terms:
                xorb, object_digest = held[t.xorb]
                data = store.read(object_digest, xorb.offsets[t.start], xorb.offsets[t.end])
                for _, raw in fmt.iter_chunks(data, 0, len(data)):
                    h.update(raw)
                    out.write(raw)
        if h.hexdigest() != digest.split(":", 1)[1]:
            raise BadRequest(f"shard refused: file {fmt.to_hex(f.hash)} does not have the sha256 it names")
        with open(name, "rb") as src:
            upload_as(reg, principal, src, digest, f.size)
    finally:
        Path(name).unlink(missing_ok=True)
