"""The Xet protocol's formats, as Hugging Face's "Xet Protocol Specification" (huggingface/hub-docs
`docs/xet/`) and its reference client (huggingface/xet-core) define them: chunk, xorb, file and
term-verification hashes (BLAKE3, keyed), the serialized xorb (chunks, then a footer) and the
shard a client uploads (file reconstructions, then the xorbs it made). Bytes in, plain values out:
nothing here knows the registry.

Every reader is bounded by what it is given: counts are checked against the bytes left before
anything is allocated, and a chunk is decompressed to at most its declared size (LZ4's ratio
would otherwise let a 64 MiB xorb expand to gigabytes)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import blake3
import lz4.frame

HASH_LEN = 32
DATA_KEY = bytes(
    [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28]
    + [157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
)
INTERNAL_NODE_KEY = bytes(
    [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230]
    + [93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
)
VERIFICATION_KEY = bytes(
    [127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243]
    + [164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195]
)
MAX_CHUNK_BYTES = 128 * 1024
"""A chunk's uncompressed size at most (the spec's chunker; its header's 3-byte sizes hold more)."""
MAX_XORB_BYTES = 64 * 1024**2 + 1024**2
"""A serialized xorb: the spec's 64 MiB of chunks, plus room for its footer and chunk headers."""
MAX_SHARD_BYTES = 64 * 1024**2
MAX_XORB_CHUNKS = 8 * 1024
"""xet-core's own bound on the chunks of a xorb: without it, 64 MiB of 4-byte chunks made 5.6M
index entries, a gigabyte of memory, and dedupe answers of hundreds of MB."""
"""A shard body (the spec: a client splits larger uploads into several shards)."""
SHARD_TAG = b"HFRepoMetaData\x00" + bytes(
    [85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169]
)
XORB_IDENT = b"XETBLOB"
XORB_IDENT_HASHES = b"XBLBHSH"
XORB_IDENT_BOUNDARIES = b"XBLBBND"
BOOKEND = b"\xff" * HASH_LEN
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
GLOBAL_DEDUPE_MODULUS = 1024


class XetFormatError(ValueError):
    """Bytes that are not what the specification says (the caller's 400)."""


# ---------------------------------------------------------------- hashes
def to_hex(raw: bytes) -> str:
    """The spec's string form of a hash: each 8-byte word as a little-endian u64, in hex."""
    return "".join(f"{w:016x}" for w in struct.unpack("<4Q", raw))


def from_hex(text: str) -> bytes:
    """The 32 bytes a hash string names; XetFormatError when it is not 64 lowercase hex."""
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise XetFormatError(f"{text[:80]!r} is not a Xet hash (64 lowercase hex)")
    return struct.pack("<4Q", *(int(text[i : i + 16], 16) for i in range(0, 64, 16)))


def chunk_hash(data: bytes) -> bytes:
    return blake3.blake3(data, key=DATA_KEY).digest()


def _merge(nodes: list[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{to_hex(h)} : {size}\n" for h, size in nodes)
    return blake3.blake3(text.encode(), key=INTERNAL_NODE_KEY).digest(), sum(s for _, s in nodes)


def _next_cut(nodes: list[tuple[bytes, int]], start: int) -> int:
    """xet-core's `next_merge_cut`: groups of 2..9 nodes, cut after a hash that is 0 mod 4."""
    left = len(nodes) - start
    if left <= 2:
        return len(nodes)
    end = min(9, left)
    for i in range(2, end):
        if struct.unpack_from("<Q", nodes[start + i][0], 24)[0] % 4 == 0:
            return start + i + 1
    return start + end


def merkle_root(chunks: list[tuple[bytes, int]]) -> bytes:
    """The aggregated hash of (chunk hash, length) pairs: a xorb's hash (zeros when empty)."""
    if not chunks:
        return bytes(HASH_LEN)
    level = list(chunks)
    while len(level) > 1:
        merged, i = [], 0
        while i < len(level):
            cut = _next_cut(level, i)
            merged.append(_merge(level[i:cut]))
            i = cut
        level = merged
    return level[0][0]


def file_hash(chunks: list[tuple[bytes, int]]) -> bytes:
    """A file's Xet hash: the merkle root of its chunks, keyed-hashed with a zero key."""
    if not chunks:
        return bytes(HASH_LEN)
    return blake3.blake3(merkle_root(chunks), key=bytes(HASH_LEN)).digest()


def verification_hash(chunk_hashes: list[bytes]) -> bytes:
    """A term's verification hash: the raw hashes of its chunk range, keyed-hashed."""
    return blake3.blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()


def dedupe_eligible(h: bytes) -> bool:
    """Whether the client asks the global dedupe query about this chunk (its hash, as the
    merkle cut reads it, is 0 mod 1024)."""
    return struct.unpack_from("<Q", h, 24)[0] % GLOBAL_DEDUPE_MODULUS == 0


# ---------------------------------------------------------------- xorbs
@dataclass(frozen=True)
class Xorb:
    """A verified serialized xorb: its hash and, per chunk, hash, uncompressed length and the
    byte range of its header + data in the serialization."""

    hash: bytes
    chunks: list[tuple[bytes, int]]
    offsets: list[int]
    """num_chunks + 1 offsets: chunk i is bytes [offsets[i], offsets[i + 1])."""

    @property
    def size(self) -> int:
        return sum(s for _, s in self.chunks)


def _decompress(scheme: int, payload: bytes, size: int) -> bytes:
    if scheme == 0:
        return payload
    if scheme not in (1, 2):
        raise XetFormatError(f"unknown chunk compression scheme {scheme}")
    try:
        dec = lz4.frame.LZ4FrameDecompressor()
        out = dec.decompress(payload, max_length=size + 1)
    except RuntimeError as err:
        raise XetFormatError(f"a chunk is not an LZ4 frame: {err}") from err
    if len(out) != size:
        raise XetFormatError(f"a chunk decompresses to more or less than its declared {size} bytes")
    if scheme == 2:  # byte grouping: 4 groups, the remainder's bytes to the first groups
        n, whole, extra = len(out), len(out) // 4, len(out) % 4
        regrouped = bytearray(n)
        pos = 0
        for g in range(4):
            take = whole + (g < extra)
            regrouped[g::4] = out[pos : pos + take]
            pos += take
        out = bytes(regrouped)
    return out


def iter_chunks(data: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, uncompressed bytes) of each chunk serialized in data[start:end]."""
    pos = start
    while pos < end:
        item, pos = read_chunk(data, pos, end)
        yield item


def read_chunk(data: bytes | memoryview, pos: int, end: int) -> tuple[tuple[int, bytes], int]:
    """The chunk serialized at `pos` (before `end`): ((pos, uncompressed bytes), the next position)."""
    view = memoryview(data)
    if end - pos < 8:
        raise XetFormatError("a chunk header is cut short")
    version, scheme = view[pos], view[pos + 4]
    packed = int.from_bytes(view[pos + 1 : pos + 4], "little")
    size = int.from_bytes(view[pos + 5 : pos + 8], "little")
    if version != 0:
        raise XetFormatError(f"chunk header version {version}; only 0 is known")
    if size > MAX_CHUNK_BYTES or packed > MAX_CHUNK_BYTES + 1024 or pos + 8 + packed > end:
        raise XetFormatError("a chunk is larger than the format allows, or cut short")
    return (pos, _decompress(scheme, bytes(view[pos + 8 : pos + 8 + packed]), size)), pos + 8 + packed


def parse_xorb(data: bytes, expected: bytes) -> Xorb:
    """Verify a serialized xorb against the hash it was uploaded under: every chunk decompressed
    and hashed, the merkle root recomputed. hf_xet uploads the chunks alone; a xorb that ends in
    xet-core's footer (`XETBLOB`, as stored by other servers) has it checked to list the same
    chunk hashes, so whatever is kept is consistent.

    Raises:
        XetFormatError: malformed, or not the xorb `expected` names.
    """
    if len(data) > MAX_XORB_BYTES:
        raise XetFormatError(f"a xorb of {len(data)} bytes; at most {MAX_XORB_BYTES}")
    end = len(data)
    chunks: list[tuple[bytes, int]] = []
    offsets: list[int] = []
    pos = 0
    while pos < end:
        if data[pos : pos + 7] == XORB_IDENT:  # a chunk header starts with version 0, never 'X'
            end = pos
            break
        if len(chunks) == MAX_XORB_CHUNKS:
            raise XetFormatError(f"a xorb of more than {MAX_XORB_CHUNKS} chunks")
        (off, raw), pos = read_chunk(data, pos, end)
        offsets.append(off)
        chunks.append((chunk_hash(raw), len(raw)))
    offsets.append(end)
    if not chunks:
        raise XetFormatError("a xorb without chunks")
    root = merkle_root(chunks)
    if root != expected:
        raise XetFormatError(f"the xorb's chunks hash to {to_hex(root)}, not {to_hex(expected)}")
    if end < len(data):
        _check_footer(data[end:], root, chunks)
    return Xorb(root, chunks, offsets)


def _check_footer(footer: bytes, root: bytes, chunks: list[tuple[bytes, int]]) -> None:
    n = len(chunks)
    if len(footer) < 52 + 32 * n or footer[7] != 1 or footer[8:40] != root:
        raise XetFormatError("the xorb's footer is not a version 1 footer naming its hash")
    pos = 40
    if (
        footer[pos : pos + 7] != XORB_IDENT_HASHES
        or int.from_bytes(footer[pos + 8 : pos + 12], "little") != n
    ):
        raise XetFormatError("the xorb's footer hash section is malformed")
    pos += 12
    if [footer[pos + 32 * i : pos + 32 * (i + 1)] for i in range(n)] != [h for h, _ in chunks]:
        raise XetFormatError("the xorb's footer lists other chunk hashes than its chunks")


def pack_index(x: Xorb) -> bytes:
    """The chunk index kept beside a stored xorb: count, then hash, length, offset per chunk."""
    out = bytearray(struct.pack("<I", len(x.chunks)))
    for (h, size), off in zip(x.chunks, x.offsets, strict=False):
        out += h + struct.pack("<II", size, off)
    return bytes(out + struct.pack("<I", x.offsets[-1]))


def unpack_index(xorb: bytes, raw: bytes) -> Xorb:
    """`pack_index`'s inverse (of an index this server wrote)."""
    (n,) = struct.unpack_from("<I", raw, 0)
    chunks, offsets = [], []
    for i in range(n):
        at = 4 + 40 * i
        size, off = struct.unpack_from("<II", raw, at + 32)
        chunks.append((raw[at : at + 32], size))
        offsets.append(off)
    offsets.append(struct.unpack_from("<I", raw, 4 + 40 * n)[0])
    return Xorb(xorb, chunks, offsets)


# ---------------------------------------------------------------- shards
@dataclass(frozen=True)
class Term:
    xorb: bytes
    size: int
    start: int
    end: int
    verification: bytes | None


@dataclass(frozen=True)
class FileInfo:
    hash: bytes
    terms: list[Term]
    sha256: bytes | None

    @property
    def size(self) -> int:
        return sum(t.size for t in self.terms)


@dataclass(frozen=True)
class CasInfo:
    xorb: bytes
    chunks: list[tuple[bytes, int, int]]
    """(chunk hash, byte offset in the xorb, uncompressed length)."""
    unpacked_bytes: int
    serialized_bytes: int


@dataclass
class Shard:
    files: list[FileInfo] = field(default_factory=list)
    xorbs: list[CasInfo] = field(default_factory=list)


def parse_shard(data: bytes) -> Shard:
    """A shard as the upload API receives it (header, file info, CAS info; the footer optional).

    Raises:
        XetFormatError: malformed (wrong tag or version, counts past the end, missing bookends,
        verification entries on some files only).
    """
    if len(data) > MAX_SHARD_BYTES:
        raise XetFormatError(f"a shard of {len(data)} bytes; at most {MAX_SHARD_BYTES}")
    if len(data) < 48 or data[:32] != SHARD_TAG:
        raise XetFormatError("not a shard (its header tag is missing)")
    version, footer_size = struct.unpack_from("<QQ", data, 32)
    if version != 2:
        raise XetFormatError(f"shard header version {version}; only 2 is known")
    end = len(data) - footer_size
    if end < 48:
        raise XetFormatError("the shard's footer size is larger than the shard")
    pos = 48
    shard = Shard()
    with_verification: set[bool] = set()

    def entry(at: int) -> bytes:
        if at + 48 > end:
            raise XetFormatError("the shard is cut short")
        return data[at : at + 48]

    while True:
        head = entry(pos)
        pos += 48
        if head[:32] == BOOKEND:
            break
        flags, count = struct.unpack_from("<II", head, 32)
        extra = count * (bool(flags & FLAG_VERIFICATION)) + bool(flags & FLAG_METADATA_EXT)
        if count == 0 or pos + 48 * (count + extra) > end:
            raise XetFormatError("a file entry has no terms, or more than the shard holds")
        raw_terms = []
        for _ in range(count):
            e = entry(pos)
            pos += 48
            _flags, size, start, stop = struct.unpack_from("<IIII", e, 32)
            if not start < stop:
                raise XetFormatError("a term's chunk range is empty")
            raw_terms.append((e[:32], size, start, stop))
        checks: list[bytes | None] = [None] * count
        with_verification.add(bool(flags & FLAG_VERIFICATION))
        if flags & FLAG_VERIFICATION:
            checks = []
            for _ in range(count):
                checks.append(entry(pos)[:32])
                pos += 48
        sha = None
        if flags & FLAG_METADATA_EXT:
            sha = entry(pos)[:32]
            pos += 48
        terms = [Term(x, s, a, b, v) for (x, s, a, b), v in zip(raw_terms, checks, strict=True)]
        shard.files.append(FileInfo(head[:32], terms, sha))
    if len(with_verification) > 1:
        raise XetFormatError("verification entries on some files of the shard only")
    while True:
        head = entry(pos)
        pos += 48
        if head[:32] == BOOKEND:
            break
        _flags, count, unpacked, on_disk = struct.unpack_from("<IIII", head, 32)
        if pos + 48 * count > end:
            raise XetFormatError("a xorb entry lists more chunks than the shard holds")
        chunks = []
        for _ in range(count):
            e = entry(pos)
            pos += 48
            offset, size = struct.unpack_from("<II", e, 32)
            chunks.append((e[:32], offset, size))
        shard.xorbs.append(CasInfo(head[:32], chunks, unpacked, on_disk))
    return shard


# ---------------------------------------------------------------- dedupe answers
SHARD_FOOTER_BYTES = 200


@dataclass(frozen=True)
class Offer:
    """A stored xorb offered to a client for deduplication, with the chunks it may match."""

    xorb: Xorb
    serialized_bytes: int
    shown: frozenset[int]
    """The chunk indices the answer lists under their keyed hash; the others get a random value
    that matches nothing (chunks of files the asker may not read)."""


def keyed_hash(h: bytes, key: bytes) -> bytes:
    """xet-core's `MerkleHash::hmac`: the chunk hash, BLAKE3-keyed with the answer's key."""
    return blake3.blake3(h, key=key).digest()


def _u64_words(h: bytes) -> tuple[int, int, int, int]:
    return struct.unpack("<4Q", h)  # type: ignore[return-value]


def dedupe_shard(offers: list[Offer], key: bytes, created: int, expiry: int, filler: bytes) -> bytes:
    """The global dedupe query's answer: a full shard (header, an empty file section, a CAS
    section, the lookup tables and the 200-byte footer) as xet-core's `export_as_keyed_shard`
    writes it, since the client keeps it as a shard file and searches its chunk lookup table.
    Chunk hashes are keyed with `key` (the footer carries it): a client finds a chunk only by
    keying a hash it computed from bytes it holds. `filler` (32 random bytes per unshown chunk,
    concatenated) stands in for the chunks the answer does not offer.
    """
    out = bytearray(SHARD_TAG + struct.pack("<QQ", 2, SHARD_FOOTER_BYTES))
    file_info_offset = len(out)
    out += BOOKEND + bytes(16)
    xorb_info_offset = len(out)
    xorb_lookup: list[tuple[int, int]] = []
    chunk_lookup: list[tuple[int, int, int]] = []
    index = stored_on_disk = stored = 0
    fill = 0
    for offer in sorted(offers, key=lambda o: _u64_words(o.xorb.hash)):
        x = offer.xorb
        xorb_lookup.append((_u64_words(x.hash)[0], index))
        out += x.hash + struct.pack("<IIII", 0, len(x.chunks), x.size, offer.serialized_bytes)
        start = 0
        for i, (h, size) in enumerate(x.chunks):
            if i in offer.shown:
                listed = keyed_hash(h, key)
                chunk_lookup.append((_u64_words(listed)[0], index, i))
            else:
                listed = filler[fill : fill + HASH_LEN]
                fill += HASH_LEN
            out += listed + struct.pack("<IIII", start, size, 0, 0)
            start += size
        index += 1 + len(x.chunks)
        stored_on_disk += offer.serialized_bytes
        stored += x.size
    out += BOOKEND + bytes(16)
    file_lookup_offset = xorb_lookup_offset = len(out)
    for trunc, at in xorb_lookup:
        out += struct.pack("<QI", trunc, at)
    chunk_lookup_offset = len(out)
    for trunc, at, i in sorted(chunk_lookup):
        out += struct.pack("<QII", trunc, at, i)
    footer_offset = len(out)
    out += struct.pack(
        "<9Q",
        1,
        file_info_offset,
        xorb_info_offset,
        file_lookup_offset,
        0,
        xorb_lookup_offset,
        len(xorb_lookup),
        chunk_lookup_offset,
        len(chunk_lookup),
    )
    out += key + struct.pack("<2Q", created, expiry) + bytes(48)
    out += struct.pack("<4Q", stored_on_disk, 0, stored, footer_offset)
    return bytes(out)


def filler_needed(offers: list[Offer]) -> int:
    """How many random bytes `dedupe_shard` needs for the chunks it does not show."""
    return HASH_LEN * sum(len(o.xorb.chunks) - len(o.shown) for o in offers)
