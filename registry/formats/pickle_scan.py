"""Find pickles that carry no magic bytes: protocol 0 and 1 streams (and later opcodes written
without a PROTO header) are plain bytes that `pickle.load` runs whatever the file is called.

`pickle_imports` walks the file from offset 0 with `pickletools.genops`, which decodes opcodes
without executing any. A file is a pickle that can run code when that walk reaches STOP and
passes an opcode that names something for the loader to import or resolve: GLOBAL,
STACK_GLOBAL, INST, EXT1/2/4 (the copyreg extension registry) or a persistent id (PERSID,
BINPERSID: torch.load's hook). Benign text that happens to decode as opcodes ("Note.") imports
nothing and is accepted; any other file fails to decode within its first bytes.

The file is read through a `read(start, length)` callable in chunks and never held whole: an
argument longer than `MAX_ARG` is skipped over rather than read, and an over-long text line
(the argument of STRING, GLOBAL, INT...) is scanned for its end and replaced by a short value
of the same kind, so the opcodes after it are still decoded.
"""

from __future__ import annotations

import pickletools
import struct
from collections.abc import Callable
from typing import IO, cast

from registry.errors import RegistryError

FIRST_CHUNK = 4096
"""Almost every file that is no pickle fails to decode within its first bytes: read little first."""
CHUNK = 1024 * 1024
MAX_ARG = 1024 * 1024
"""Arguments (BINBYTES, BINUNICODE, LONG4 ...) and text lines longer than this are not kept."""

MAX_OPCODES = 100_000
IMPORTING_OPCODES = frozenset(
    {"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
)

# What an over-long line is replaced by, per opcode reading it: a value its reader accepts.
_LINE_STANDINS = {b"S": b"''\n", b"I": b"0\n", b"L": b"0\n", b"F": b"0\n", b"g": b"0\n", b"p": b"0\n"}
_DEFAULT_STANDIN = b"x\n"  # UNICODE, PERSID, and the module / name lines of GLOBAL and INST


class _Skipped(bytes):
    """An empty bytes object that reports the length of the argument it stands for: genops
    checks only the length of a counted argument (then decodes it, which an empty one passes)."""

    _n: int

    def __new__(cls, n: int) -> _Skipped:
        obj = super().__new__(cls)
        obj._n = n
        return obj

    def __len__(self) -> int:
        return self._n


class _Stream:
    """The read/readline/tell that genops uses, over `read_at(start, length)`, buffered by chunk."""

    def __init__(self, read_at: Callable[[int, int], bytes], size: int) -> None:
        self._read_at = read_at
        self._size = size
        self._pos = 0
        self._buf = b""
        self._buf_start = 0
        self._opcode = b""
        self._chunk = FIRST_CHUNK

    def tell(self) -> int:
        return self._pos

    def _fill(self) -> int:
        """The offset of the current position in the buffer, reading the next chunk when the
        buffer is used up; the buffer holds nothing past it at the end of the file."""
        offset = self._pos - self._buf_start
        if offset >= len(self._buf):
            want = min(self._chunk, self._size - self._pos)
            self._chunk = min(2 * self._chunk, CHUNK)
            self._buf = self._read_at(self._pos, want)[:want] if want > 0 else b""
            self._buf_start, offset = self._pos, 0
        return offset

    def read(self, n: int = -1, /) -> bytes:
        left = self._size - self._pos
        n = left if n < 0 else min(n, left)
        if n > MAX_ARG:
            self._pos += n
            return _Skipped(n)
        parts: list[bytes] = []
        got = 0
        while got < n:
            offset = self._fill()
            take = self._buf[offset : offset + n - got]
            if not take:
                break
            parts.append(take)
            got += len(take)
            self._pos += len(take)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if n == 1:
            self._opcode = data  # genops reads each opcode alone; a line-reading argument follows it
        return data

    def readline(self) -> bytes:
        parts: list[bytes] = []
        length = 0
        while True:
            offset = self._fill()
            if offset >= len(self._buf):
                return b"".join(parts)  # no newline before the end: genops fails on it
            end = self._buf.find(b"\n", offset)
            stop = len(self._buf) if end < 0 else end + 1
            self._pos += stop - offset
            length += stop - offset
            if length <= MAX_ARG:
                parts.append(self._buf[offset:stop])
            if end >= 0:
                break
        if length > MAX_ARG:
            return _LINE_STANDINS.get(self._opcode, _DEFAULT_STANDIN)
        return b"".join(parts)


def pickle_imports(read_at: Callable[[int, int], bytes], size: int) -> str | None:
    """The first importing opcode (its name and argument) of a pickle stream at offset 0 that
    decodes up to STOP, or None: the file is no pickle, or one that imports nothing. A stream
    of more than MAX_OPCODES opcodes is reported too: no text decodes that far by chance, and
    walking it would cost the server seconds per push (4M opcodes took 2.3 s)."""
    found: str | None = None
    try:
        stream = pickletools.genops(cast(IO[bytes], _Stream(read_at, size)))
        for count, (opcode, arg, pos) in enumerate(stream):
            if count >= MAX_OPCODES:
                return f"more than {MAX_OPCODES} pickle opcodes from byte 0"
            if found is None and opcode.name in IMPORTING_OPCODES:
                shown = "" if arg is None or isinstance(arg, bytes) else f" {str(arg)[:80]!r}"
                found = f"{opcode.name}{shown} at byte {pos}"
    except RegistryError:
        raise  # the store could not be read (some of these are ValueErrors)
    except (ValueError, struct.error, OverflowError, AssertionError):
        return None  # not a valid opcode stream (UnicodeDecodeError is a ValueError)
    return found
