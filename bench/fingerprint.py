"""Base-model fingerprint throughput next to `sha256sum` of the same files, in the same run.

    python bench/fingerprint.py [--size-mib 1024] [--shards 4]

Writes a Llama-shaped model of random bf16-sized bytes in several shards, warms the page cache, then
times `sha256sum` over the shards (one process, sequential: the anchor) and our fingerprint
(tensors hashed in parallel on all cores from memory-mapped files).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from registry.formats.model_folder import inspect_model

MIB = 1024 * 1024


def write_model(folder: Path, size_mib: int, shards: int) -> list[Path]:
    """`shards` safetensors files of F32 tensors ([1024, 1024] each, 4 MiB), random bytes."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": 1024,
                "num_hidden_layers": 1,
            }
        )
    )
    per_shard = size_mib // 4 // shards
    paths, k = [], 0
    for s in range(shards):
        header = {}
        for i in range(per_shard):
            header[f"model.layers.{k}.mlp.proj{i}.weight"] = {
                "dtype": "F32",
                "shape": [1024, 1024],
                "data_offsets": [i * 4 * MIB, (i + 1) * 4 * MIB],
            }
        k += 1
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path = folder / f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        with path.open("wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for _ in range(per_shard):
                f.write(os.urandom(4 * MIB))
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fp-"))
    try:
        shards = write_model(work / "model", args.size_mib, args.shards)
        size_mb = sum(p.stat().st_size for p in shards) / 1e6
        subprocess.run(["cat", *map(str, shards)], check=True, stdout=subprocess.DEVNULL)  # warm the cache
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", *map(str, shards)], check=True, stdout=subprocess.DEVNULL)
        anchor = time.perf_counter() - t0
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            facts = inspect_model(work / "model")
            best = min(best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        inspect_model(work / "model", workers=1)
        single = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{size_mb:.0f} MB in {len(shards)} shards, {os.cpu_count()} cores")
        print(f"sha256sum (anchor): {anchor:.2f} s, {size_mb / anchor:.0f} MB/s")
        print(
            f"fingerprint (ours): {best:.2f} s, {size_mb / best:.0f} MB/s -> {anchor / best:.2f}x the anchor; "
            f"peak RSS {rss:.0f} MiB (files are memory-mapped, pages count while mapped)"
        )
        print(
            f"fingerprint, one thread: {single:.2f} s, {size_mb / single:.0f} MB/s -> parallel hashing gives "
            f"{single / best:.2f}x on this machine"
        )
        print(f"fingerprint {facts.fingerprint}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
