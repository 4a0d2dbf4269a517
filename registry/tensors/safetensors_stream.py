"""Write safetensors files tensor by tensor: the header is planned from shapes and dtypes up front,
then each tensor's bytes are appended as they are produced, so memory holds a tensor or two, never
a shard. Each tensor is hashed while written, on a thread, for the model fingerprint; the files'
own digests (blob names) are the caller's business."""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from registry.formats.safetensors_header import DTYPE_SIZES

TORCH_TO_ST: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
ST_TO_TORCH = {v: k for k, v in TORCH_TO_ST.items()}
ST_ITEMSIZE = DTYPE_SIZES  # bytes per element, by safetensors dtype: one table


COPY_CHUNK = 16 * 1024 * 1024
IN_FLIGHT = 2
"""Tensors queued for writing and hashing while the caller computes the next one."""
HASH_BACKLOG = 2
"""Chunks of one streamed tensor written but not yet hashed."""


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    dtype: str  # safetensors dtype string
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ST_ITEMSIZE[self.dtype]


@dataclass
class WrittenFile:
    path: Path
    size: int
    tensor_sha256: dict[str, str] = field(default_factory=dict)


def plan_shards(tensors: list[PlannedTensor], max_shard_bytes: int) -> list[list[PlannedTensor]]:
    """Greedy packing in order, like transformers: a tensor larger than the limit goes alone."""
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


class ShardWriter:
    """One safetensors file being written: call `write(name, bytes)` once per planned tensor, in
    plan order, then `close()`."""

    def __init__(
        self, path: Path, tensors: list[PlannedTensor], metadata: dict[str, str] | None = None
    ) -> None:
        self.path = path
        self.order = [t.name for t in tensors]
        self.next = 0
        header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        for t in tensors:
            header[t.name] = {
                "dtype": t.dtype,
                "shape": list(t.shape),
                "data_offsets": [offset, offset + t.nbytes],
            }
            offset += t.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
        self.expected = {t.name: t.nbytes for t in tensors}
        # Unbuffered: writes are whole tensors, and copy_file_range moves the same file offset.
        self.file: BinaryIO = path.open("wb", buffering=0)
        # A tensor is written on one thread and hashed on another while the caller computes the
        # next one (write() and hashlib release the GIL): compute, I/O and hashing overlap. At most
        # IN_FLIGHT tensors are queued, which bounds memory to a few tensors' bytes.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="shard-write")
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="tensor-sha256")
        self._in_flight: deque[tuple[Future[None], Future[None]]] = deque()
        self.size = 0
        self.tensor_sha256: dict[str, str] = {}
        self._emit(len(raw).to_bytes(8, "little") + raw)

    def _emit(self, data: bytes | memoryview) -> None:
        self._write_all(data)
        self.size += len(data)

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:  # an unbuffered file may write less than asked
            view = view[self.file.write(view) or 0 :]

    def copy(self, name: str, source: Path, start: int, end: int) -> None:
        """Queue an unchanged tensor: copied inside the kernel (copy_file_range, no trip through
        user memory) and hashed from its source through short-lived memory maps."""
        if self.next >= len(self.order) or self.order[self.next] != name:
            raise RuntimeError(f"{self.path.name}: tensor {name} written out of plan order")
        if end - start != self.expected[name]:
            raise RuntimeError(f"{name}: {end - start} bytes in the source, planned {self.expected[name]}")
        while len(self._in_flight) >= IN_FLIGHT:
            self._settle_oldest()
        hashed = self._hasher.submit(self._hash_range, name, source, start, end)
        written = self._writer.submit(self._copy_range, source, start, end)
        self._in_flight.append((written, hashed))
        self.next += 1

    def _copy_range(self, source: Path, start: int, end: int) -> None:
        offset = start
        with source.open("rb") as src:
            if hasattr(os, "copy_file_range"):  # Linux
                try:
                    while offset < end:
                        n = os.copy_file_range(src.fileno(), self.file.fileno(), end - offset, offset)
                        if n == 0:
                            raise RuntimeError(f"{source.name}: truncated at byte {offset}")
                        offset += n
                except OSError:  # not between these filesystems: copy the rest by hand
                    pass
            src.seek(offset)
            while offset < end:
                chunk = src.read(min(COPY_CHUNK, end - offset))
                if not chunk:
                    raise RuntimeError(f"{source.name}: truncated at byte {offset}")
                self._write_all(chunk)
                offset += len(chunk)
        self.size += end - start

    def _hash_range(self, name: str, source: Path, start: int, end: int) -> None:
        h = hashlib.sha256()
        with source.open("rb") as src:
            for pos in range(start, end, COPY_CHUNK):
                base = pos - pos % mmap.ALLOCATIONGRANULARITY
                stop = min(end, pos + COPY_CHUNK)
                with mmap.mmap(src.fileno(), stop - base, offset=base, access=mmap.ACCESS_READ) as mm:
                    with memoryview(mm) as view:
                        h.update(view[pos - base :])
        self.tensor_sha256[name] = h.hexdigest()

    def write(self, name: str, chunks: Iterable[bytes | memoryview]) -> None:
        """Queue one tensor's bytes (the chunks are consumed on the writer thread); returns once
        fewer than IN_FLIGHT earlier tensors are still being written or hashed."""
        if self.next >= len(self.order) or self.order[self.next] != name:
            raise RuntimeError(f"{self.path.name}: tensor {name} written out of plan order")
        while len(self._in_flight) >= IN_FLIGHT:
            self._settle_oldest()
        hashed: Future[None] = Future()  # set by the hasher once this tensor's digest is recorded
        written = self._writer.submit(self._write_tensor, name, chunks, hashed)
        self._in_flight.append((written, hashed))
        self.next += 1

    def _write_tensor(self, name: str, chunks: Iterable[bytes | memoryview], hashed: Future[None]) -> None:
        h = hashlib.sha256()
        n = 0
        backlog: deque[Future[None]] = deque()
        for chunk in chunks:
            backlog.append(self._hasher.submit(h.update, chunk))  # one hasher: chunks hash in order
            self._emit(chunk)
            n += len(chunk)
            while len(backlog) > HASH_BACKLOG:  # a streamed tensor's chunks wait to be hashed: bound them
                backlog.popleft().result()
        if n != self.expected[name]:
            hashed.set_exception(RuntimeError(f"{name}: wrote {n} bytes, planned {self.expected[name]}"))
            return
        self._hasher.submit(self._record, name, h, hashed)

    def _record(self, name: str, h: hashlib._Hash, hashed: Future[None]) -> None:
        self.tensor_sha256[name] = h.hexdigest()
        hashed.set_result(None)

    def _settle_oldest(self) -> None:
        written, hashed = self._in_flight.popleft()
        written.result()  # re-raises what went wrong on the writer thread (a failed read...)
        hashed.result()

    def _wait(self) -> None:
        while self._in_flight:
            self._settle_oldest()

    def finish(self) -> Future[WrittenFile]:
        """Flush and fsync on the writer thread, so the caller can start the next shard while the
        disk catches up; the future is the finished file."""
        if self.next != len(self.order):
            raise RuntimeError(f"{self.path.name}: {len(self.order) - self.next} planned tensors not written")
        self._wait()
        done = self._writer.submit(self._finish)
        self._writer.shutdown(wait=False)
        self._hasher.shutdown(wait=False)
        return done

    def _finish(self) -> WrittenFile:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return WrittenFile(self.path, self.size, self.tensor_sha256)

    def close(self) -> WrittenFile:
        return self.finish().result()


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a CPU tensor, without a copy when it is contiguous."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")  # type: ignore[arg-type]
