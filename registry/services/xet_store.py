"""Where Xet's objects live and what deduplicates against them: verified xorbs in the blob store
(its `xet/` prefix, so every replica sharing the store shares them), the files shards rebuilt
from them, the global dedupe index, and what gc reclaims.

- A xorb is kept as one object of the blob store's `xet/` prefix, named by the sha256 of its bytes
  followed by 16 random bytes: each upload writes its own key, so an object gc deletes is never one
  that a concurrent upload of the same xorb just wrote. Its row (`xet_xorbs`) holds its chunk list;
  a row means its object is stored (the object is written first).
- A file a shard rebuilt is recorded with its terms (`xet_files`), and its eligible chunks in the
  global dedupe index (`xet_chunks`): the file's first chunk and every chunk whose hash is 0 mod
  1024, the chunks xet-core asks about.
- The dedupe query answers with the xorbs of files the asker may use (read, or uploaded the bytes
  of: the rule a commit follows, `blobs_unusable`), listing under a per-answer key only the chunks
  those files name; the other chunks of a shared xorb get random values that match nothing.
- `used_at` of a xorb moves whenever it is uploaded again, named by a shard or offered by an
  answer; gc reclaims a xorb that no kept file names and that went unused for the grace period,
  under the same rule as blobs (a file is kept while its blob is listed or recent). An answer
  expires (DEDUPE_ANSWER_TTL_S) well within gc's default grace.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from registry.access.checks import blobs_unusable
from registry.access.principal import Principal
from registry.db import models as m
from registry.db.engine import insert_ignoring_duplicates, unit_of_work
from registry.errors import BadRequest, from_storage_error, store_errors
from registry.formats import xet as fmt
from registry.services.context import Registry
from registry.services.timeutil import now
from storage import BlobNotFound, BlobStore

PREFIX = "xet"
NONCE_BYTES = 16
DEDUPE_ANSWER_TTL_S = 6 * 3600
"""How long a client may deduplicate against an answer: a quarter of gc's default grace, which
runs from the answer (it touches the xorbs it offers)."""
MAX_ANSWER_FILES = 8
"""Files an answer draws its xorbs from (the newest that list the chunk): a chunk every file
holds (zeros) must not make the answer the whole store."""
MAX_ANSWER_XORBS = 64
"""Xorbs in one answer: 64 x 1024 chunks x 48 bytes is about 3 MiB."""
MAX_INDEXED_CHUNK_FILES = 256


def xet_blobs(reg: Registry) -> BlobStore:
    return reg.store.under(PREFIX)


class XorbStore:
    """Verified xorbs: objects in the blob store's `xet/` prefix, their chunk lists in the database."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.blobs = xet_blobs(reg)

    def put(self, hash_hex: str, data: bytes) -> bool:
        """Verify and keep a xorb; False when it was held already (not an error: its grace restarts).

        Raises:
            BadRequest: malformed, or its chunks do not hash to `hash_hex`.
        """
        try:
            expected = fmt.from_hex(hash_hex)
            if self._touch([hash_hex]):
                return False
            parsed = fmt.parse_xorb(data, expected)
        except fmt.XetFormatError as err:
            raise BadRequest(f"xorb refused: {err}") from err
        nonce = secrets.token_bytes(NONCE_BYTES)
        h = hashlib.sha256(data)
        h.update(nonce)
        digest = "sha256:" + h.hexdigest()
        try:
            # Read in place (no copy of a 64 MiB body): the xorb's bytes, then the nonce.
            self.blobs.put(_Concat(data, nonce), digest, len(data) + NONCE_BYTES)
        except store_errors() as err:
            raise from_storage_error(err) from err
        at = now()
        row = {
            "hash": hash_hex,
            "digest": digest,
            "size": len(data),
            "chunks": fmt.pack_index(parsed),
            "created_at": at,
            "used_at": at,
        }
        with unit_of_work(self.reg.sessions) as session:
            # A twin upload that won leaves this object unlisted: gc's stray sweep takes it.
            insert_ignoring_duplicates(session, m.XetXorb, [row])
        return True

    def _touch(self, hashes: list[str]) -> set[str]:
        """Restart the grace of the xorbs held among `hashes`; the ones held."""
        with unit_of_work(self.reg.sessions) as session:
            session.execute(update(m.XetXorb).where(m.XetXorb.hash.in_(hashes)).values(used_at=now()))
            return set(session.scalars(select(m.XetXorb.hash).where(m.XetXorb.hash.in_(hashes))))

    def held(self, xorbs: Iterable[bytes]) -> dict[bytes, tuple[fmt.Xorb, str]]:
        """The chunk list and object digest of each named xorb, its grace restarted (a shard names
        them): gc keeps a xorb touched after its run began.

        Raises:
            BadRequest: a xorb never uploaded (or reclaimed by gc since a client's cache learned of it).
        """
        names = {fmt.to_hex(x): x for x in xorbs}
        if not names:
            return {}
        self._touch(sorted(names))
        with unit_of_work(self.reg.sessions) as session:
            rows = session.execute(
                select(m.XetXorb.hash, m.XetXorb.digest, m.XetXorb.chunks).where(
                    m.XetXorb.hash.in_(sorted(names))
                )
            ).all()
        got = {names[h]: (fmt.unpack_index(names[h], bytes(chunks)), digest) for h, digest, chunks in rows}
        for name, raw in names.items():
            if raw not in got:
                raise BadRequest(
                    f"xorb {name} was not uploaded: upload it before the shard (a client whose Xet cache "
                    "remembers xorbs this registry has since garbage-collected: clear that cache)"
                )
        return got

    def read(self, digest: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a stored xorb."""
        try:
            return b"".join(self.blobs.open(digest, start, end))
        except BlobNotFound as err:
            raise BadRequest("a xorb the shard names was garbage-collected meanwhile; upload again") from err
        except store_errors() as err:
            raise from_storage_error(err) from err


class _Concat:
    """A read(n) stream over two byte strings, without joining them."""

    def __init__(self, *parts: bytes) -> None:
        self._parts = [memoryview(p) for p in parts]

    def read(self, n: int = -1, /) -> bytes:
        out = bytearray()
        while self._parts and (n < 0 or len(out) < n):
            head = self._parts[0]
            take = len(head) if n < 0 else min(len(head), n - len(out))
            out += head[:take]
            if take == len(head):
                self._parts.pop(0)
            else:
                self._parts[0] = head[take:]
        return bytes(out)


def record_file(reg: Registry, digest: str, f: fmt.FileInfo, chunks: list[tuple[bytes, int]]) -> None:
    """Remember how blob `digest` was rebuilt, and index its eligible chunks for the dedupe query."""
    eligible = {fmt.to_hex(h) for i, (h, _) in enumerate(chunks) if i == 0 or fmt.dedupe_eligible(h)}
    terms = [[fmt.to_hex(t.xorb), t.start, t.end] for t in f.terms]
    with unit_of_work(reg.sessions) as session:
        row = {"digest": digest, "hash": fmt.to_hex(f.hash), "terms": terms, "created_at": now()}
        insert_ignoring_duplicates(session, m.XetFile, [row])
        insert_ignoring_duplicates(
            session, m.XetChunk, [{"chunk": c, "digest": digest} for c in sorted(eligible)]
        )


def dedupe_answer(reg: Registry, principal: Principal, chunk_hex: str) -> bytes | None:
    """The shard that answers a global dedupe query for a chunk, or None (404) when no file the
    principal may use holds it: the answer never tells whether someone else's file does."""
    with unit_of_work(reg.sessions) as session:
        digests = list(
            session.scalars(
                select(m.XetChunk.digest).where(m.XetChunk.chunk == chunk_hex).limit(MAX_INDEXED_CHUNK_FILES)
            )
        )
        if digests and not principal.is_operator:
            refused = set(blobs_unusable(session, principal, digests))
            digests = [d for d in digests if d not in refused]
        if not digests:
            return None
        files = session.scalars(
            select(m.XetFile.terms)
            .where(m.XetFile.digest.in_(digests))
            .order_by(m.XetFile.created_at.desc())
            .limit(MAX_ANSWER_FILES)
        ).all()
        shown: dict[str, set[int]] = {}
        for terms in files:
            for xorb, start, end in terms:
                if xorb in shown or len(shown) < MAX_ANSWER_XORBS:
                    shown.setdefault(xorb, set()).update(range(int(start), int(end)))
        names = sorted(shown)
        session.execute(update(m.XetXorb).where(m.XetXorb.hash.in_(names)).values(used_at=now()))
        rows = session.execute(
            select(m.XetXorb.hash, m.XetXorb.size, m.XetXorb.chunks).where(m.XetXorb.hash.in_(names))
        ).all()
    offers = [
        fmt.Offer(fmt.unpack_index(fmt.from_hex(h), bytes(chunks)), size, frozenset(shown[h]))
        for h, size, chunks in rows
    ]
    if not offers:
        return None
    created = int(now().timestamp())
    filler = secrets.token_bytes(fmt.filler_needed(offers))
    return fmt.dedupe_shard(offers, secrets.token_bytes(32), created, created + DEDUPE_ANSWER_TTL_S, filler)


@dataclass(frozen=True)
class XetReclaim:
    xorbs: int
    bytes: int
    files_forgotten: int


def reclaim(reg: Registry, keep: set[str], cutoff: datetime, dry_run: bool) -> XetReclaim:
    """gc's Xet part: forget the files whose blob is neither kept (`keep`: listed or recent) nor
    rebuilt since `cutoff`, then delete the xorbs no remaining file names and nothing used since
    `cutoff`, and the objects of the `xet/` prefix no row names (an upload that lost a race or died
    between its object and its row) older than `cutoff`.
    """
    blobs = xet_blobs(reg)
    with unit_of_work(reg.sessions) as session:
        files = session.execute(select(m.XetFile.digest, m.XetFile.terms, m.XetFile.created_at)).all()
        recent = set(session.scalars(select(m.XetFile.digest).where(m.XetFile.created_at >= cutoff)))
        forgotten = [d for d, _, _ in files if d not in keep and d not in recent]
        named = {t[0] for d, terms, _ in files if d not in forgotten for t in terms}
        idle = session.execute(
            select(m.XetXorb.hash, m.XetXorb.digest, m.XetXorb.size).where(m.XetXorb.used_at < cutoff)
        ).all()
        doomed = {h: (digest, size + NONCE_BYTES) for h, digest, size in idle if h not in named}
        if not dry_run:
            for part in _batches(forgotten):
                session.execute(delete(m.XetChunk).where(m.XetChunk.digest.in_(part)))
                session.execute(delete(m.XetFile).where(m.XetFile.digest.in_(part)))
            for part in _batches(sorted(doomed)):
                # used_at again: a shard or an upload that touched one since is not reclaimed.
                session.execute(delete(m.XetXorb).where(m.XetXorb.hash.in_(part), m.XetXorb.used_at < cutoff))
            kept_now = set(session.scalars(select(m.XetXorb.hash).where(m.XetXorb.hash.in_(sorted(doomed)))))
            doomed = {h: v for h, v in doomed.items() if h not in kept_now}
        listed = set(session.scalars(select(m.XetXorb.digest)))
    try:
        strays = [b for b in blobs.iter_blobs() if b.digest not in listed and b.modified < cutoff.timestamp()]
    except store_errors() as err:
        raise from_storage_error(err) from err
    gone = {digest: size for digest, size in doomed.values()}
    gone.update({b.digest: b.size for b in strays if b.digest not in gone})
    if not dry_run:
        for digest in gone:
            try:
                blobs.delete(digest)
            except store_errors():
                continue  # its row is gone: the next run sees it as a stray
    return XetReclaim(len(gone), sum(gone.values()), len(forgotten))


def _batches(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
