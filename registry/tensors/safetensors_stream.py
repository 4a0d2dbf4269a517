"""Write safetensors files tensor by tensor: the header is planned from shapes and dtypes up front,
then each tensor's bytes are appended as they are produced, so memory holds one tensor, never a
shard. Each file and each tensor is hashed while written (blob digests, model fingerprint)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

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
ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}
ST_ITEMSIZE["BOOL"] = 1


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
    sha256: str
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
        self.file: BinaryIO = path.open("wb")
        self.file_hash = hashlib.sha256()
        # Both digests are computed on their own threads while the main thread writes (hashlib and
        # write() release the GIL): on 2 cores that overlaps two full passes over the bytes.
        self._file_hasher = ThreadPoolExecutor(1, thread_name_prefix="file-sha256")
        self._tensor_hasher = ThreadPoolExecutor(1, thread_name_prefix="tensor-sha256")
        self.size = 0
        self.tensor_sha256: dict[str, str] = {}
        self._emit(len(raw).to_bytes(8, "little") + raw)

    def _emit(self, data: bytes | memoryview) -> Future[None]:
        hashed = self._file_hasher.submit(self.file_hash.update, data)
        self.file.write(data)
        self.size += len(data)
        return hashed

    def write(self, name: str, chunks: Iterable[bytes | memoryview]) -> None:
        if self.next >= len(self.order) or self.order[self.next] != name:
            raise RuntimeError(f"{self.path.name}: tensor {name} written out of plan order")
        h = hashlib.sha256()
        n = 0
        pending: list[Future[None]] = []
        for chunk in chunks:
            pending.append(self._tensor_hasher.submit(h.update, chunk))
            pending.append(self._emit(chunk))
            n += len(chunk)
        for f in pending:  # the chunks stay alive until hashed: memory holds one tensor at most
            f.result()
        if n != self.expected[name]:
            raise RuntimeError(f"{name}: wrote {n} bytes, planned {self.expected[name]}")
        self.tensor_sha256[name] = h.hexdigest()
        self.next += 1

    def close(self) -> WrittenFile:
        if self.next != len(self.order):
            raise RuntimeError(f"{self.path.name}: {len(self.order) - self.next} planned tensors not written")
        self._file_hasher.shutdown()
        self._tensor_hasher.shutdown()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return WrittenFile(self.path, self.size, "sha256:" + self.file_hash.hexdigest(), self.tensor_sha256)


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a CPU tensor, without a copy when it is contiguous."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")  # type: ignore[arg-type]
