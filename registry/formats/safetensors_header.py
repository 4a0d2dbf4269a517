"""Validate a safetensors header without loading tensors."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.bounds import loads_strict
from registry.errors import InvalidSafetensors

DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class LocatedTensor(TensorInfo):
    """A tensor of a model folder: its shard, with `start`/`end` as absolute offsets in that file
    (a TensorInfo's are relative to the data section)."""

    path: Path


@dataclass(frozen=True)
class SafetensorsHeader:
    header_size: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    @property
    def data_offset(self) -> int:
        return 8 + self.header_size


def header_length(path: str, first8: bytes, file_size: int, max_header_bytes: int) -> int:
    """Read the little-endian u64 header length and check it against the caps."""
    if len(first8) < 8:
        raise InvalidSafetensors(f"{path}: file too short for a safetensors header", path=path)
    (n,) = struct.unpack("<Q", first8[:8])
    if n > max_header_bytes:
        raise InvalidSafetensors(
            f"{path}: header of {n} bytes exceeds the cap of {max_header_bytes}", path=path
        )
    if 8 + n > file_size:
        raise InvalidSafetensors(f"{path}: header length {n} runs past the end of the file", path=path)
    return n


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidSafetensors(f"duplicate tensor name {k!r}", tensor=k)
        out[k] = v
    return out


def parse_header(path: str, raw: bytes, file_size: int, max_tensors: int | None = None) -> SafetensorsHeader:
    """Check every entry: dtype allowlist, shape, offsets inside the file, contiguous, no overlap;
    with `max_tensors`, their number first."""
    # An upper bound on the entries first, from a count in C: each one is an object.
    if max_tensors is not None and raw.count(b"{") > max_tensors + 2:  # the header, __metadata__
        raise InvalidSafetensors(
            f"{path}: more than {max_tensors} tensors; an adapter may hold at most {max_tensors}", path=path
        )
    # One strict parse (NaN, lone surrogates, NUL, depth: a 100k-deep header must not exhaust the
    # stack) that builds each object through the duplicate check, which json.loads alone cannot
    # make. The hook also keeps the parse preemptible: json's C parser holds the GIL for a whole
    # document without one (165 ms for 65k tensors), and every request waited on it.
    try:
        doc = loads_strict(raw, f"{path} header", InvalidSafetensors, object_pairs_hook=_no_duplicates)
    except InvalidSafetensors as err:  # loads_strict's messages name the header, the hook's do not
        message = err.message if err.message.startswith(path) else f"{path}: {err.message}"
        raise InvalidSafetensors(message, path=path) from err
    if not isinstance(doc, dict):
        raise InvalidSafetensors(f"{path}: header is not a JSON object", path=path)
    if max_tensors is not None and len(doc) > max_tensors + ("__metadata__" in doc):
        raise InvalidSafetensors(
            f"{path}: {len(doc)} tensors; an adapter may hold at most {max_tensors}", path=path
        )
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidSafetensors(f"{path}: __metadata__ must map strings to strings", path=path)
    tensors: dict[str, TensorInfo] = {}
    for name, entry in doc.items():
        tensors[name] = _tensor(path, name, entry)
    data_size = file_size - 8 - len(raw)
    cursor = 0
    for t in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if t.start != cursor:
            kind = "overlaps" if t.start < cursor else "leaves a gap before"
            raise InvalidSafetensors(f"{path}: tensor {t.name!r} {kind} its data", path=path, tensor=t.name)
        cursor = t.end
    if cursor != data_size:
        raise InvalidSafetensors(
            f"{path}: tensors cover {cursor} bytes but the data section is {data_size}", path=path
        )
    return SafetensorsHeader(len(raw), tensors, metadata)


def _tensor(path: str, name: str, entry: Any) -> TensorInfo:
    def bad(why: str) -> InvalidSafetensors:
        return InvalidSafetensors(f"{path}: tensor {name!r} {why}", path=path, tensor=name)

    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise bad("must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise bad(f"has dtype {dtype!r}, not one of {', '.join(DTYPE_SIZES)}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad("has a shape that is not a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[1] < offsets[0]
    ):
        raise bad("has data_offsets that are not [begin, end] with begin <= end")
    info = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
    if info.end - info.start != info.numel * DTYPE_SIZES[dtype]:
        raise bad(
            f"spans {info.end - info.start} bytes but {dtype}{list(shape)} needs "
            f"{info.numel * DTYPE_SIZES[dtype]}"
        )
    return info
