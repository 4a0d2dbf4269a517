"""A LoRA adapter of one q_proj pair (A [r, n] and B [n, r], float32) written without torch or
numpy: what the benchmarks and the tests that need "an adapter of this many bytes" push.

One home for it: five copies of these lines (benchmarks, the cluster's load, the integrations' and
the storage tests' fixtures) differed only in the size and where the bytes came from. The bytes are
the caller's choice: `seeded` (reproducible, cheap), `random_chunks` (incompressible, any size in
bounded memory), or the caller's own (a dedupe test edits a few runs of them)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path

PREFIX = "base_model.model.model.layers.0.self_attn.q_proj"
WEIGHTS = "adapter_model.safetensors"
MIB = 1024 * 1024


def lora_head(r: int, n: int) -> bytes:
    """The weights file's first bytes: the header's length and the header (padded to 8 bytes)."""
    size = r * n * 4
    header = json.dumps(
        {
            f"{PREFIX}.lora_A.weight": {"dtype": "F32", "shape": [r, n], "data_offsets": [0, size]},
            f"{PREFIX}.lora_B.weight": {"dtype": "F32", "shape": [n, r], "data_offsets": [size, 2 * size]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def data_bytes(r: int, n: int) -> int:
    """How many tensor bytes follow the head."""
    return 2 * r * n * 4


def n_for_mib(size_mib: int, r: int = 16) -> int:
    """The `n` that makes the pair total `size_mib` MiB at rank `r`."""
    return size_mib * MIB // 4 // 2 // r


def seeded(seed: int, size: int) -> bytes:
    """`size` bytes that depend on `seed` (sha256 of it, repeated): no randomness to carry."""
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def random_chunks(size: int, chunk: int = 8 * MIB) -> Iterable[bytes]:
    """`size` random bytes, `chunk` at a time (a 512 MiB adapter never sits in memory)."""
    left = size
    while left:
        part = os.urandom(min(chunk, left))
        left -= len(part)
        yield part


def write_lora(
    folder: Path,
    *,
    r: int = 4,
    n: int = 64,
    data: bytes | Iterable[bytes] | None = None,
    lora_alpha: int = 8,
    base: str | None = None,
) -> Path:
    """Write the adapter into `folder` (made if missing): its weights file of `data` (random when
    None) and its adapter_config.json, naming `base` as base_model_name_or_path when given."""
    folder.mkdir(parents=True, exist_ok=True)
    want = data_bytes(r, n)
    chunks: Iterable[bytes] = (
        random_chunks(want) if data is None else [data] if isinstance(data, bytes) else data
    )
    written = 0
    with (folder / WEIGHTS).open("wb") as f:
        f.write(lora_head(r, n))
        for chunk in chunks:
            f.write(chunk)
            written += len(chunk)
    if written != want:
        raise ValueError(f"{written} tensor bytes given, the header says {want}")
    config: dict[str, object] = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": lora_alpha,
        "target_modules": ["q_proj"],
        "task_type": "CAUSAL_LM",
    }
    if base is not None:
        config["base_model_name_or_path"] = base
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def file_digests(folder: Path) -> dict[str, str]:
    """{file name: sha256 hex} of the folder's files."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
